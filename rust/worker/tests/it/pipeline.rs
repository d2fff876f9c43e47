//! One job from input parquet to output parquet, with a stand-in embedder:
//! output layout and metadata, cleaning counts, row ranges, the raw UTF-8
//! fallback, and every bad-input case as a permanent error naming the file.

use super::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    ArrayRef, DictionaryArray, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow_schema::DataType;
use embedfleet_core::Job;
use embedfleet_worker::error::WorkerError;
use embedfleet_worker::limits::MemoryBudget;
use embedfleet_worker::output::{read_metadata, Provenance};
use embedfleet_worker::paths::{fingerprint, DataRoots};
use embedfleet_worker::pipeline::{JobResult, Pipeline};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;

const MODEL: &str = "all-MiniLM-L6-v2@0000000000000000";

fn root(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ef-pipe-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(d.join("chains/s/sub")).unwrap();
    d
}

fn write(path: &Path, columns: Vec<(&str, ArrayRef)>, group_rows: usize) {
    let batch = RecordBatch::try_from_iter(columns).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(group_rows))
        .build();
    let mut w =
        ArrowWriter::try_new(fs::File::create(path).unwrap(), batch.schema(), Some(props)).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

fn texts(v: &[Option<&str>]) -> ArrayRef {
    Arc::new(StringArray::from(v.to_vec()))
}

fn pipeline(root: &Path) -> Pipeline {
    Pipeline {
        roots: DataRoots::new(root, root),
        embedder: common::hash_embedder(MODEL),
        provenance: Provenance {
            worker_id: "rust-test-1".into(),
            worker_kind: "rust".into(),
            device: "cpu".into(),
            precision: "fp32".into(),
            software_version: "0.1.0".into(),
        },
        memory: MemoryBudget::default(),
        chunk_rows: 2,
        reuse: None,
    }
}

fn job(root: &Path, rel: &str, rows: Option<(u64, u64)>, idcol: Option<&str>) -> Job {
    let fp = fingerprint(&root.join(rel)).unwrap();
    Job::create(rel, &fp, MODEL, rows, "text", idcol, "default").unwrap()
}

fn run(p: &mut Pipeline, j: &Job) -> Result<JobResult, WorkerError> {
    p.run(j, &mut || Ok(()))
}

fn read_output(path: &Path) -> RecordBatch {
    let r = ParquetRecordBatchReaderBuilder::try_new(fs::File::open(path).unwrap())
        .unwrap()
        .build()
        .unwrap();
    let batches: Vec<RecordBatch> = r.map(Result::unwrap).collect();
    arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
}

fn column<T: Clone + 'static>(b: &RecordBatch, name: &str) -> T {
    b.column_by_name(name)
        .unwrap()
        .as_any()
        .downcast_ref::<T>()
        .unwrap()
        .clone()
}

#[test]
fn embeds_a_file_with_ids_nulls_blanks_and_duplicates() {
    let d = root("basic");
    let rel = "chains/s/sub/a.parquet";
    let ids: ArrayRef = Arc::new(Int64Array::from(vec![10, 11, 12, 13, 14]));
    write(
        &d.join(rel),
        vec![
            ("id", ids),
            (
                "text",
                texts(&[Some("a"), None, Some(" \t"), Some("a"), Some("b")]),
            ),
        ],
        1000,
    );
    let mut p = pipeline(&d);
    let j = job(&d, rel, None, Some("id"));
    let r = run(&mut p, &j).unwrap();
    assert!(!r.skipped);
    assert_eq!(
        (
            r.rows,
            r.counts.rows_null,
            r.counts.rows_empty,
            r.counts.rows_deduplicated
        ),
        (4, 1, 1, 1)
    );
    let out = d.join(&j.out);
    let b = read_output(&out);
    let schema = b.schema();
    assert_eq!(schema.field(0).name(), "row");
    assert!(!schema.field(0).is_nullable());
    assert_eq!(schema.field(1).data_type(), &DataType::Int64);
    assert!(
        matches!(schema.field(2).data_type(), DataType::FixedSizeList(item, 384) if item.data_type() == &DataType::Float32)
    );
    assert_eq!(
        column::<Int64Array>(&b, "row").values().to_vec(),
        vec![0, 2, 3, 4]
    );
    assert_eq!(
        column::<Int64Array>(&b, "id").values().to_vec(),
        vec![10, 12, 13, 14]
    );
    let emb = column::<arrow_array::FixedSizeListArray>(&b, "embedding");
    let values = emb
        .values()
        .as_any()
        .downcast_ref::<Float32Array>()
        .unwrap();
    assert_eq!(
        values.values()[..384],
        values.values()[2 * 384..3 * 384],
        "duplicates share their embedding"
    );
    let norm: f32 = values.values()[..384].iter().map(|x| x * x).sum();
    assert!((norm - 1.0).abs() < 1e-4);
    let meta = read_metadata(&out);
    for (k, v) in [
        ("embedfleet.model_id", MODEL),
        ("embedfleet.input_path", rel),
        ("embedfleet.row_start", "0"),
        ("embedfleet.row_end", "5"),
        ("embedfleet.rows_total", "5"),
        ("embedfleet.rows_embedded", "4"),
        ("embedfleet.worker_kind", "rust"),
        ("embedfleet.normalized", "true"),
    ] {
        assert_eq!(meta.get(k).map(String::as_str), Some(v), "{k}");
    }
    assert_eq!(meta.len(), 24);
    let leftovers: Vec<_> = fs::read_dir(out.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty());
    let again = run(&mut p, &j).unwrap();
    assert!(
        again.skipped,
        "an up-to-date output is acknowledged without recomputing"
    );
    assert_eq!(again.counts, r.counts);
    fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_row_range_covers_only_its_rows() {
    let d = root("range");
    let rel = "chains/s/sub/r.parquet";
    let values: Vec<String> = (0..12).map(|i| format!("text {i}")).collect();
    write(
        &d.join(rel),
        vec![("text", Arc::new(StringArray::from(values)) as ArrayRef)],
        3,
    );
    let mut p = pipeline(&d);
    let j = job(&d, rel, Some((4, 9)), None);
    assert!(j.out.ends_with("r.rows-4-9.parquet"));
    let r = run(&mut p, &j).unwrap();
    assert_eq!(r.rows, 5);
    let b = read_output(&d.join(&j.out));
    assert_eq!(
        column::<Int64Array>(&b, "row").values().to_vec(),
        vec![4, 5, 6, 7, 8]
    );
    assert!(b.schema().column_with_name("id").is_none());
    let empty = job(&d, rel, Some((12, 12)), None);
    assert_eq!(
        run(&mut p, &empty).unwrap().rows,
        0,
        "an empty part writes an empty output"
    );
    assert!(d.join(&empty.out).is_file());
    fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_dictionary_text_column_is_read_as_its_values() {
    let d = root("dict");
    let rel = "chains/s/sub/d.parquet";
    let dict: DictionaryArray<arrow_array::types::Int32Type> =
        vec![Some("x"), Some("y"), None, Some("x")]
            .into_iter()
            .collect();
    write(
        &d.join(rel),
        vec![("text", Arc::new(dict) as ArrayRef)],
        1000,
    );
    let r = run(&mut pipeline(&d), &job(&d, rel, None, None)).unwrap();
    assert_eq!(
        (r.rows, r.counts.rows_null, r.counts.rows_deduplicated),
        (3, 1, 1)
    );
    fs::remove_dir_all(d).unwrap();
}

#[test]
fn invalid_utf8_in_a_string_column_is_replaced_and_counted() {
    use parquet::data_type::{ByteArray, ByteArrayType, Int64Type};
    use parquet::file::writer::SerializedFileWriter;
    let d = root("utf8");
    let rel = "chains/s/sub/u.parquet";
    let schema = Arc::new(
        parquet::schema::parser::parse_message_type(
            "message m { required binary text (UTF8); required int64 id; }",
        )
        .unwrap(),
    );
    let mut w = SerializedFileWriter::new(
        fs::File::create(d.join(rel)).unwrap(),
        schema,
        Default::default(),
    )
    .unwrap();
    let mut rg = w.next_row_group().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    let vals: Vec<ByteArray> = vec![
        b"fine".to_vec().into(),
        b"bad \xff byte".to_vec().into(),
        b"ok".to_vec().into(),
    ];
    col.typed::<ByteArrayType>()
        .write_batch(&vals, None, None)
        .unwrap();
    col.close().unwrap();
    let mut col = rg.next_column().unwrap().unwrap();
    col.typed::<Int64Type>()
        .write_batch(&[7, 8, 9], None, None)
        .unwrap();
    col.close().unwrap();
    rg.close().unwrap();
    w.close().unwrap();
    let j = job(&d, rel, None, Some("id"));
    let r = run(&mut pipeline(&d), &j).unwrap();
    assert_eq!((r.rows, r.counts.rows_invalid_utf8), (3, 1));
    let b = read_output(&d.join(&j.out));
    assert_eq!(
        column::<Int64Array>(&b, "id").values().to_vec(),
        vec![7, 8, 9]
    );
    fs::remove_dir_all(d).unwrap();
}

fn permanent_reason(d: &Path, rel: &str, j: &Job) -> String {
    match run(&mut pipeline(d), j) {
        Err(e) => {
            assert!(e.is_permanent(), "{e:?} should be permanent");
            let msg = e.to_string();
            assert!(
                msg.starts_with(&format!("{rel}:")) || msg.contains(rel),
                "{msg:?} does not name {rel}"
            );
            msg
        }
        Ok(r) => panic!("bad input accepted: {r:?}"),
    }
}

#[test]
fn bad_inputs_are_permanent_errors_naming_the_file() {
    let d = root("bad");
    let corrupt = "chains/s/sub/corrupt.parquet";
    fs::write(d.join(corrupt), b"PAR1 this is not parquet at all").unwrap();
    assert!(permanent_reason(&d, corrupt, &job(&d, corrupt, None, None))
        .contains("not a readable parquet file"));

    let other = "chains/s/sub/other.parquet";
    write(&d.join(other), vec![("body", texts(&[Some("x")]))], 10);
    let msg = permanent_reason(&d, other, &job(&d, other, None, None));
    assert!(
        msg.contains("missing column \"text\"") && msg.contains("body"),
        "{msg}"
    );

    let typed = "chains/s/sub/typed.parquet";
    write(
        &d.join(typed),
        vec![("text", Arc::new(Int32Array::from(vec![1, 2])) as ArrayRef)],
        10,
    );
    assert!(permanent_reason(&d, typed, &job(&d, typed, None, None))
        .contains("expected a string or binary column"));

    let beyond = job(&d, other, Some((0, 99)), None);
    let mut b2 = beyond.clone();
    b2.col = "body".into();
    assert!(permanent_reason(&d, other, &b2).contains("beyond the file's 1 rows"));

    let mut changed = job(&d, other, None, None);
    changed.fp = "1-1".into();
    assert!(permanent_reason(&d, other, &changed).contains("input changed since the scan"));

    let missing = Job::create(
        "chains/s/sub/none.parquet",
        "1-1",
        MODEL,
        None,
        "text",
        None,
        "default",
    )
    .unwrap();
    assert!(permanent_reason(&d, "chains/s/sub/none.parquet", &missing).contains("not found"));

    let mut wrong_model = job(&d, other, None, None);
    wrong_model.model = "all-MiniLM-L6-v2@ffffffffffffffff".into();
    assert!(matches!(
        run(&mut pipeline(&d), &wrong_model),
        Err(WorkerError::ModelMismatch(_))
    ));
    fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_part_that_cannot_fit_the_memory_ceiling_is_refused_for_another_worker() {
    let d = root("mem");
    let rel = "chains/s/sub/m.parquet";
    write(&d.join(rel), vec![("text", texts(&[Some("x")]))], 10);
    let mut p = pipeline(&d);
    p.memory = MemoryBudget::new(Some(1 << 20));
    let e = run(&mut p, &job(&d, rel, None, None)).unwrap_err();
    assert!(
        matches!(e, WorkerError::PartTooLarge(_)) && !e.is_permanent(),
        "{e:?}"
    );
    fs::remove_dir_all(d).unwrap();
}

#[test]
fn a_lost_lease_stops_the_job_before_its_output_exists() {
    let d = root("lost");
    let rel = "chains/s/sub/l.parquet";
    write(
        &d.join(rel),
        vec![("text", texts(&[Some("a"), Some("b"), Some("c")]))],
        10,
    );
    let j = job(&d, rel, None, None);
    let mut calls = 0;
    let got = pipeline(&d).run(&j, &mut || {
        calls += 1;
        if calls > 1 {
            Err(WorkerError::LeaseLost("gone".into()))
        } else {
            Ok(())
        }
    });
    assert!(matches!(got, Err(WorkerError::LeaseLost(_))));
    assert!(!d.join(&j.out).exists());
    let dir = d.join("embeddings/s/sub");
    assert_eq!(
        fs::read_dir(dir).unwrap().count(),
        0,
        "the temporary was removed"
    );
    fs::remove_dir_all(d).unwrap();
}
