//! Scans of small generated trees (Parquet files written with the low-level
//! writer, no arrow needed).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parquet::data_type::Int64Type;
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::parser::parse_message_type;

use super::*;
use crate::job::Job;

const MODEL: &str = "all-MiniLM-L6-v2@0000000000000000";

struct Tree {
    root: PathBuf,
}

impl Tree {
    fn new(name: &str) -> Tree {
        let root = std::env::temp_dir().join(format!("efscan-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        fs::create_dir_all(root.join("in/chains")).unwrap();
        fs::create_dir_all(root.join("out")).unwrap();
        Tree { root }
    }
    fn input(&self, rel: &str) -> PathBuf {
        self.root.join("in/chains").join(rel)
    }
    fn output(&self, rel: &str) -> PathBuf {
        self.root.join("out/embeddings").join(rel)
    }
    fn opts(&self, rows_per_part: u64) -> ScanOptions {
        ScanOptions {
            input_root: self.root.join("in"),
            output_root: self.root.join("out"),
            model: MODEL.into(),
            rows_per_part,
            subreddits: None,
            use_cache: true,
            threads: 2,
        }
    }
    fn scan(&self, rows_per_part: u64) -> ScanOutcome {
        scan(&self.opts(rows_per_part), &Progress::default()).unwrap()
    }
    /// Write the output a worker would have made for this input.
    fn make_output(&self, rel: &str, rows: Option<(u64, u64)>, model: &str) {
        let fp = Stamp::of(&fs::metadata(self.input(rel)).unwrap()).fingerprint();
        let out = Job::create(
            &format!("chains/{rel}"),
            &fp,
            model,
            rows,
            "text",
            None,
            "default",
        )
        .unwrap()
        .out;
        let path = self.root.join("out").join(out);
        write_parquet(
            &path,
            &[1],
            &[("input_fingerprint", &fp), ("model_id", model)],
        );
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.root);
    }
}

fn write_parquet(path: &Path, groups: &[usize], meta: &[(&str, &str)]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    let schema = Arc::new(parse_message_type("message m { required int64 row; }").unwrap());
    let kv = meta
        .iter()
        .map(|(k, v)| KeyValue::new(format!("embedfleet.{k}"), v.to_string()))
        .collect();
    let props = Arc::new(
        WriterProperties::builder()
            .set_key_value_metadata(Some(kv))
            .build(),
    );
    let mut w = SerializedFileWriter::new(fs::File::create(path).unwrap(), schema, props).unwrap();
    for &n in groups {
        let mut rg = w.next_row_group().unwrap();
        while let Some(mut col) = rg.next_column().unwrap() {
            let values: Vec<i64> = (0..n as i64).collect();
            col.typed::<Int64Type>()
                .write_batch(&values, None, None)
                .unwrap();
            col.close().unwrap();
        }
        rg.close().unwrap();
    }
    w.close().unwrap();
}

fn counts(o: &ScanOutcome, sub: &str) -> SubredditCounts {
    o.subreddits
        .iter()
        .find(|s| s.name == sub)
        .cloned()
        .unwrap()
}

#[test]
fn missing_up_to_date_modified_and_orphans() {
    let t = Tree::new("diff");
    for name in ["a", "b", "c"] {
        write_parquet(&t.input(&format!("s1/cats/{name}.parquet")), &[5], &[]);
    }
    t.make_output("s1/cats/a.parquet", None, MODEL);
    t.make_output("s1/cats/b.parquet", None, "other-model@1");
    write_parquet(&t.output("s1/cats/gone.parquet"), &[1], &[]);
    write_parquet(&t.output("s1/dogs/gone.rows-0-5.parquet"), &[1], &[]);

    let o = t.scan(1000);
    let c = counts(&o, "cats");
    assert_eq!(
        (c.files, c.up_to_date, c.missing, c.modified, c.jobs),
        (3, 1, 1, 1, 2)
    );
    let paths: Vec<&str> = o.jobs.iter().map(|j| j.path.as_str()).collect();
    assert_eq!(
        paths,
        ["chains/s1/cats/b.parquet", "chains/s1/cats/c.parquet"]
    );
    assert_eq!(
        o.orphans,
        [
            "embeddings/s1/cats/gone.parquet",
            "embeddings/s1/dogs/gone.rows-0-5.parquet"
        ]
    );
    assert_eq!(counts(&o, "dogs").orphans, 1);
    let j = &o.jobs[1];
    let fp = Stamp::of(&fs::metadata(t.input("s1/cats/c.parquet")).unwrap()).fingerprint();
    assert_eq!(j.fingerprint, fp);
    assert_eq!(j.id, crate::job_id(&j.path, None, &fp, MODEL));
    assert_eq!(j.out, "embeddings/s1/cats/c.parquet");
    assert!(o.issues.is_empty(), "{:?}", o.issues);
}

#[test]
fn large_files_split_on_row_groups_and_parts_count_once_done() {
    let t = Tree::new("split");
    write_parquet(&t.input("s1/cats/big.parquet"), &[40, 40, 40, 40, 40], &[]);
    let o = t.scan(100);
    let ranges: Vec<_> = o.jobs.iter().map(|j| j.rows.unwrap()).collect();
    assert_eq!(ranges, [(0, 80), (80, 160), (160, 200)]);
    assert_eq!(counts(&o, "cats").split_parts, 3);
    assert_eq!(o.jobs[0].out, "embeddings/s1/cats/big.rows-0-80.parquet");

    t.make_output("s1/cats/big.parquet", Some((0, 80)), MODEL);
    let o = t.scan(100);
    assert_eq!(
        o.jobs.iter().map(|j| j.rows.unwrap()).collect::<Vec<_>>(),
        [(80, 160), (160, 200)]
    );
    assert_eq!(counts(&o, "cats").missing, 1);

    // Parts that tile the file keep it up to date under another split policy.
    t.make_output("s1/cats/big.parquet", Some((80, 160)), MODEL);
    t.make_output("s1/cats/big.parquet", Some((160, 200)), MODEL);
    let o = t.scan(50);
    assert!(o.jobs.is_empty());
    assert_eq!(counts(&o, "cats").up_to_date, 1);
}

#[test]
fn warm_rescan_reads_no_footer() {
    let t = Tree::new("cache");
    for i in 0..4 {
        write_parquet(&t.input(&format!("s1/cats/{i}.parquet")), &[3], &[]);
    }
    t.make_output("s1/cats/0.parquet", None, MODEL);
    t.make_output("s1/cats/1.parquet", None, MODEL);
    let cold = t.scan(1000);
    assert_eq!(
        (
            cold.stats.output_footers_read,
            cold.stats.input_footers_read
        ),
        (2, 2)
    );
    assert!(cold.stats.cache_saved);
    let warm = t.scan(1000);
    assert_eq!(
        (
            warm.stats.output_footers_read,
            warm.stats.input_footers_read
        ),
        (0, 0)
    );
    assert_eq!(warm.stats.cache_hits, 4);
    assert_eq!(warm.jobs, cold.jobs);
    assert!(
        !warm.stats.cache_saved,
        "an unchanged cache is not rewritten"
    );
}

#[test]
fn bad_files_are_reported_and_the_scan_goes_on() {
    let t = Tree::new("bad");
    write_parquet(&t.input("s1/cats/good.parquet"), &[3], &[]);
    fs::write(
        t.input("s1/cats/fake.parquet"),
        b"this is not parquet at all",
    )
    .unwrap();
    fs::write(t.input("s1/cats/tiny.parquet"), b"PAR1").unwrap();
    symlink(t.root.join("nowhere"), t.input("s1/cats/dangling.parquet")).unwrap();
    fs::create_dir_all(t.input("s1/cats/dir.parquet")).unwrap();
    fs::write(t.input("s1/cats/notes.txt"), b"ignored").unwrap();
    symlink(t.root.join("nowhere"), t.input("s1/lost")).unwrap();
    // An output beside a broken input is not an orphan.
    write_parquet(&t.output("s1/cats/dangling.parquet"), &[1], &[]);

    let o = t.scan(1000);
    assert_eq!(o.jobs.len(), 1);
    assert_eq!(o.jobs[0].path, "chains/s1/cats/good.parquet");
    let mut bad: Vec<&str> = o
        .issues
        .iter()
        .map(|i| i.path.rsplit('/').next().unwrap())
        .collect();
    bad.sort();
    assert_eq!(
        bad,
        [
            "dangling.parquet",
            "dir.parquet",
            "fake.parquet",
            "lost",
            "tiny.parquet"
        ]
    );
    assert!(o.orphans.is_empty());
    assert_eq!(counts(&o, "cats").errors, 4);
    let problem = |name: &str| {
        o.issues
            .iter()
            .find(|i| i.path.ends_with(name))
            .unwrap()
            .problem
            .clone()
    };
    assert!(problem("fake.parquet").contains("not a parquet file"));
    assert!(problem("dangling.parquet").contains("broken symlink"));
}

#[test]
fn checkpoint_takes_only_its_subreddits_in_its_order() {
    let t = Tree::new("checkpoint");
    for (suffix, sub) in [("s1", "a"), ("s1", "b"), ("s2", "b"), ("s2", "c")] {
        write_parquet(&t.input(&format!("{suffix}/{sub}/x.parquet")), &[2], &[]);
    }
    let mut opts = t.opts(1000);
    opts.subreddits = Some(vec!["c".into(), "b".into(), "zzz".into(), "c".into()]);
    let o = scan(&opts, &Progress::default()).unwrap();
    let paths: Vec<&str> = o.jobs.iter().map(|j| j.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "chains/s2/c/x.parquet",
            "chains/s1/b/x.parquet",
            "chains/s2/b/x.parquet"
        ]
    );
    let names: Vec<&str> = o.subreddits.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["c", "b", "zzz"]);
    assert_eq!(o.issues.len(), 1);
    assert!(o.issues[0].problem.contains("'zzz'"));
}

#[test]
fn a_missing_input_tree_is_an_error() {
    let t = Tree::new("noinput");
    fs::remove_dir_all(t.root.join("in/chains")).unwrap();
    assert!(matches!(
        scan(&t.opts(10), &Progress::default()),
        Err(ScanError::NoInputTree(_))
    ));
}

#[test]
fn cancelled_scans_say_so() {
    let t = Tree::new("cancel");
    write_parquet(&t.input("s1/a/x.parquet"), &[2], &[]);
    let p = Progress::default();
    p.cancel.store(true, Ordering::Relaxed);
    let o = scan(&t.opts(10), &p).unwrap();
    assert!(o.cancelled);
    assert!(o.jobs.is_empty());
}

#[test]
fn symlinks_out_of_the_data_root_are_reported_and_skipped() {
    let t = Tree::new("symlink-out");
    let outside = t.root.join("outside");
    write_parquet(&outside.join("secret.parquet"), &[2], &[]);
    write_parquet(&outside.join("cats/x.parquet"), &[2], &[]);
    write_parquet(&t.input("s1/dogs/good.parquet"), &[3], &[]);
    write_parquet(&t.input("s1/dogs/inner.parquet"), &[3], &[]);
    // A file and a directory outside the root, and a link that stays inside.
    symlink(
        outside.join("secret.parquet"),
        t.input("s1/dogs/out.parquet"),
    )
    .unwrap();
    symlink(outside.join("cats"), t.input("s1/cats")).unwrap();
    symlink("good.parquet", t.input("s1/dogs/alias.parquet")).unwrap();

    let o = t.scan(1000);
    let mut paths: Vec<&str> = o.jobs.iter().map(|j| j.path.as_str()).collect();
    paths.sort();
    assert_eq!(
        paths,
        [
            "chains/s1/dogs/alias.parquet",
            "chains/s1/dogs/good.parquet",
            "chains/s1/dogs/inner.parquet"
        ]
    );
    let out_of_root: Vec<&str> = o
        .issues
        .iter()
        .filter(|i| i.problem.contains("symlink leads out of the data root"))
        .map(|i| i.path.rsplit('/').next().unwrap())
        .collect();
    assert_eq!(out_of_root, ["cats", "out.parquet"], "{:?}", o.issues);
    assert_eq!(o.issues.len(), 2);
    assert!(o.subreddits.iter().all(|s| s.name != "cats"));
}

#[test]
fn an_input_tree_that_leads_out_of_its_root_is_an_error() {
    let t = Tree::new("chains-out");
    let elsewhere = t.root.join("elsewhere/chains");
    fs::create_dir_all(&elsewhere).unwrap();
    fs::remove_dir_all(t.root.join("in/chains")).unwrap();
    symlink(&elsewhere, t.root.join("in/chains")).unwrap();
    match scan(&t.opts(10), &Progress::default()) {
        Err(ScanError::Unreadable(issue)) => {
            assert!(issue.problem.contains("symlink leads out of the data root"))
        }
        other => panic!("expected an error, got {:?}", other.map(|o| o.jobs)),
    }
}

#[test]
fn worker_temporaries_are_listed_apart_not_as_outputs() {
    let t = Tree::new("temps");
    write_parquet(&t.input("s1/cats/a.parquet"), &[2], &[]);
    fs::create_dir_all(t.output("s1/cats")).unwrap();
    fs::write(
        t.output("s1/cats/.a.parquet.rust-w1.0123abcd.89abcdef.tmp"),
        b"",
    )
    .unwrap();
    fs::write(t.output("s1/cats/.hidden-note"), b"not a temp").unwrap();
    let o = t.scan(1000);
    assert_eq!(o.jobs.len(), 1);
    assert!(o.orphans.is_empty() && o.issues.is_empty());
    assert_eq!(
        o.temps,
        ["embeddings/s1/cats/.a.parquet.rust-w1.0123abcd.89abcdef.tmp"]
    );
}
