//! The data path at accelerator rates (issue 22): the tokenizer's fast path
//! equals the library, the simulated device returns the hash stand-in's
//! vectors, the pipelined path writes the same bytes as the unpipelined one,
//! and a job taken over mid-pipeline leaves no partial output.

use super::common;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Int64Array, RecordBatch, StringArray};
use embedfleet_core::Job;
use embedfleet_worker::batching::Embedder;
use embedfleet_worker::error::WorkerError;
use embedfleet_worker::limits::MemoryBudget;
use embedfleet_worker::output::Provenance;
use embedfleet_worker::paths::{fingerprint, DataRoots};
use embedfleet_worker::pipeline::Pipeline;
use embedfleet_worker::reuse::MemoryReuseStore;
use embedfleet_worker::stand_in::{HashEmbedder, SimulatedEmbedder};
use embedfleet_worker::tokenize::TextTokenizer;
use parquet::arrow::ArrowWriter;

const MODEL: &str = "all-MiniLM-L6-v2@0000000000000000";

fn tokenizer_path() -> PathBuf {
    common::repo().join("models/onnx/minilm/tokenizer.json")
}

/// Printable ASCII, punctuation, control characters, non-ASCII, added
/// tokens, words needing `##` pieces, long texts.
fn texts() -> Vec<String> {
    let mut out: Vec<String> = [
        "",
        " ",
        "hello world",
        "Hello, World! How's it going?",
        "[CLS] hi",
        "hello [sep] you",
        "[MASK]",
        "[unused1]",
        "unaffable words",
        "x##y",
        "3.14 $100 <b>~`|^",
        "a\tb",
        "café naïve",
        "東京 😀",
        "\u{7f}del",
        "UPPER case MiXeD",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    out.push("a".repeat(150));
    out.push("word ".repeat(300));
    out.push("ok ".repeat(30_000));
    let alphabet: Vec<char> = (0x20u8..0x7f)
        .map(char::from)
        .chain("\t\néü東😀\u{a0}\u{1c}".chars())
        .collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    for _ in 0..3000 {
        let mut s = String::new();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        for _ in 0..(x % 40) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            s.push(alphabet[(x % alphabet.len() as u64) as usize]);
        }
        out.push(s);
    }
    let words = [
        "the", "cat", "sat", "on", "a", "mat", "and", "then", "it", "ran", "away",
    ];
    for i in 0..2000usize {
        let n = 3 + i % 20;
        let s: Vec<&str> = (0..n)
            .map(|k| words[(i * 7 + k * 3) % words.len()])
            .collect();
        out.push(s.join(if i % 3 == 0 { ", " } else { " " }));
    }
    out
}

#[test]
fn fast_tokenization_equals_the_tokenizers_library() {
    let texts = texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let fast = TextTokenizer::load(&tokenizer_path()).unwrap();
    let library = TextTokenizer::load(&tokenizer_path())
        .unwrap()
        .without_fast_path();
    let got = fast.encode(&refs).unwrap();
    let want = library.encode(&refs).unwrap();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "text {:?}", &texts[i][..texts[i].len().min(60)]);
    }
}

#[test]
fn the_simulated_device_returns_the_hash_stand_ins_vectors() {
    let tok = TextTokenizer::load(&tokenizer_path()).unwrap();
    let mut sim = SimulatedEmbedder::new(MODEL.into(), tok, 0.0, 20_000.0, None);
    let texts = ["a text", "another text", "a text"];
    let t0 = std::time::Instant::now();
    let got = sim.encode(&texts).unwrap();
    assert!(t0.elapsed().as_secs_f64() >= 3.0 / 20_000.0);
    let want = HashEmbedder::new(MODEL.into(), 0.0).encode(&texts).unwrap();
    assert_eq!(got.embeddings, want.embeddings);
    assert_eq!(got.truncated, vec![false; 3]);
}

fn root(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("ef-datapath-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(d.join("in/chains/s/sub")).unwrap();
    d
}

/// 500 rows (some repeated, some null) in row groups of 64.
fn input(d: &Path) -> Job {
    let rel = "chains/s/sub/a.parquet";
    let n = 500;
    let text: Vec<Option<String>> = (0..n)
        .map(|i| (i % 37 != 0).then(|| format!("message {} of the chain", i % 211)))
        .collect();
    let batch = RecordBatch::try_from_iter(vec![
        (
            "id",
            Arc::new(Int64Array::from_iter_values(0..n)) as ArrayRef,
        ),
        ("text", Arc::new(StringArray::from(text)) as ArrayRef),
    ])
    .unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(64))
        .build();
    let path = d.join("in").join(rel);
    let mut w = ArrowWriter::try_new(
        fs::File::create(&path).unwrap(),
        batch.schema(),
        Some(props),
    )
    .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let fp = fingerprint(&path).unwrap();
    Job::create(rel, &fp, MODEL, None, "text", Some("id"), "default").unwrap()
}

fn pipeline(d: &Path, out: &str, reuse: bool) -> Pipeline {
    Pipeline {
        roots: DataRoots::new(&d.join("in"), &d.join(out)),
        embedder: Box::new(HashEmbedder::new(MODEL.into(), 0.0)),
        provenance: Provenance {
            worker_id: "rust-test-1".into(),
            worker_kind: "rust".into(),
            device: "cpu".into(),
            precision: "fp32".into(),
            software_version: "0.1.0".into(),
        },
        memory: MemoryBudget::default(),
        chunk_rows: 48,
        reuse: reuse.then(|| Box::new(MemoryReuseStore::default()) as _),
    }
}

#[test]
fn the_pipelined_path_writes_the_same_bytes_as_the_unpipelined_one() {
    for reuse in [false, true] {
        let d = root(if reuse { "bytes-reuse" } else { "bytes" });
        let job = input(&d);
        let a = pipeline(&d, "serial", reuse)
            .run_unpipelined(&job, &mut || Ok(()))
            .unwrap();
        let b = pipeline(&d, "piped", reuse)
            .run(&job, &mut || Ok(()))
            .unwrap();
        assert_eq!(a.counts, b.counts);
        let serial = fs::read(d.join("serial").join(&job.out)).unwrap();
        let piped = fs::read(d.join("piped").join(&job.out)).unwrap();
        assert!(serial == piped, "outputs differ (reuse {reuse})");
        let _ = fs::remove_dir_all(&d);
    }
}

#[test]
fn a_job_taken_over_mid_pipeline_leaves_no_partial_output() {
    let d = root("takeover");
    let job = input(&d);
    let mut p = pipeline(&d, "out", false);
    let mut calls = 0;
    let mut checkpoint = || {
        calls += 1;
        if calls == 5 {
            return Err(WorkerError::LeaseLost("another worker took it over".into()));
        }
        Ok(())
    };
    let err = p.run(&job, &mut checkpoint).unwrap_err();
    assert!(matches!(err, WorkerError::LeaseLost(_)), "{err}");
    let left: Vec<PathBuf> = walk(&d.join("out"));
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = fs::remove_dir_all(&d);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .flat_map(|p| if p.is_dir() { walk(&p) } else { vec![p] })
        .collect()
}
