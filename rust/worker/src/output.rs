// Twin: workers/writer.py (docs/parity.md)
//! The output file of a job (twin of `workers/writer.py`): `row` int64,
//! optional `id` (the input's Arrow type), `embedding`
//! `FixedSizeList<float32, 384>`, provenance in the key-value metadata.
//! Written chunk by chunk to a hidden per-attempt temporary name in the
//! output directory, fsynced, renamed into place and the directory fsynced.
//!
//! The temporary is `.<name>.<worker>.<job8>.<random>.tmp` and exists only
//! from the first rows written until the rename; the names let a worker
//! remove its own stale ones at start and a job's when it takes the job over
//! (twin: `workers/temps.py`).

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, FixedSizeListArray, Float32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use embedfleet_core::constants::{EMBEDDING_DIM, META_PREFIX, OUTPUT_FORMAT_VERSION};
use embedfleet_core::Job;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::clean::Counts;
use crate::error::{Result, WorkerError};
use crate::faults;
use crate::paths::fsync_dir;

/// Who produced an output, and how.
#[derive(Debug, Clone)]
pub struct Provenance {
    pub worker_id: String,
    pub worker_kind: String,
    pub device: String,
    pub precision: String,
    pub software_version: String,
}

/// The `embedfleet.*` key-value metadata of an output, in Python's key order.
pub fn metadata(
    job: &Job,
    range: (u64, u64),
    prov: &Provenance,
    counts: &Counts,
) -> Vec<(String, String)> {
    let mut meta: Vec<(&str, String)> = vec![
        ("format_version", OUTPUT_FORMAT_VERSION.to_string()),
        ("model_id", job.model.clone()),
        ("normalized", "true".into()),
        ("input_path", job.path.clone()),
        ("input_fingerprint", job.fp.clone()),
        ("row_start", range.0.to_string()),
        ("row_end", range.1.to_string()),
        ("job_id", job.id.clone()),
        ("worker_id", prov.worker_id.clone()),
        ("worker_kind", prov.worker_kind.clone()),
        ("device", prov.device.clone()),
        ("precision", prov.precision.clone()),
        ("software_version", prov.software_version.clone()),
    ];
    meta.extend(counts.fields().iter().map(|(k, v)| (*k, v.to_string())));
    meta.into_iter()
        .map(|(k, v)| (format!("{META_PREFIX}{k}"), v))
        .collect()
}

/// The `embedfleet.*` metadata of an existing output (empty if unreadable).
pub fn read_metadata(path: &Path) -> HashMap<String, String> {
    let Ok(file) = File::open(path) else {
        return HashMap::new();
    };
    let Ok(reader) = SerializedFileReader::new(file) else {
        return HashMap::new();
    };
    let kv = reader
        .metadata()
        .file_metadata()
        .key_value_metadata()
        .cloned()
        .unwrap_or_default();
    kv.into_iter()
        .filter(|kv| kv.key.starts_with(META_PREFIX))
        .filter_map(|kv| Some((kv.key, kv.value?)))
        .collect()
}

/// The output's metadata when it exists for the same input fingerprint and model.
pub fn up_to_date(path: &Path, job: &Job) -> Option<HashMap<String, String>> {
    if !path.is_file() {
        return None;
    }
    let meta = read_metadata(path);
    let get = |k: &str| meta.get(&format!("{META_PREFIX}{k}")).map(String::as_str);
    (get("input_fingerprint") == Some(job.fp.as_str())
        && get("model_id") == Some(job.model.as_str()))
    .then_some(meta)
}

/// Name of the list element: pyarrow writes Parquet's compliant `element`
/// (and reads it back as such), so the Rust worker's files read identically.
const ELEMENT: &str = "element";

fn element() -> Arc<Field> {
    Arc::new(Field::new(ELEMENT, DataType::Float32, true))
}

/// `row`, optional `id`, `embedding`: the same schema pyarrow writes.
pub fn output_schema(id_type: Option<&DataType>) -> SchemaRef {
    let mut fields = vec![Field::new("row", DataType::Int64, false)];
    if let Some(t) = id_type {
        fields.push(Field::new("id", t.clone(), true));
    }
    let list = DataType::FixedSizeList(element(), EMBEDDING_DIM as i32);
    fields.push(Field::new("embedding", list, false));
    Arc::new(Schema::new(fields))
}

fn random_hex() -> String {
    let mut b = [0u8; 4];
    if File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut b))
        .is_err()
    {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        b = (t.subsec_nanos() ^ std::process::id()).to_le_bytes();
    }
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Suffix of every temporary output name.
pub const TEMP_SUFFIX: &str = ".tmp";

/// The worker id as it appears in a temporary name.
pub fn safe_worker_id(worker_id: &str) -> String {
    let safe: String = worker_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if safe.is_empty() {
        "_".into()
    } else {
        safe
    }
}

/// A fresh temporary name for `final_path`, for this worker and job.
pub fn temp_path(final_path: &Path, worker_id: &str, job_id: &str) -> PathBuf {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let job8: String = job_id.chars().take(8).collect();
    let tmp = format!(
        ".{name}.{}.{job8}.{}{TEMP_SUFFIX}",
        safe_worker_id(worker_id),
        random_hex()
    );
    final_path.with_file_name(tmp)
}

/// What a temporary name says: final name, worker, job (first 8 hex digits;
/// `None` in the previous format, `.<name>.<worker>.<random>.tmp`).
#[derive(Debug, PartialEq, Eq)]
pub struct TempName {
    pub final_name: String,
    pub worker: String,
    pub job8: Option<String>,
}

fn hex8(s: &str) -> bool {
    s.len() == 8
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The parts of a worker's temporary name; `None` for any other name.
pub fn parse_temp(name: &str) -> Option<TempName> {
    let core = name.strip_prefix('.')?.strip_suffix(TEMP_SUFFIX)?;
    let worker_ok = |w: &str| !w.is_empty() && safe_worker_id(w) == w;
    let p: Vec<&str> = core.rsplitn(4, '.').collect();
    if let [rand, job8, worker, final_name] = p[..] {
        if hex8(rand) && hex8(job8) && worker_ok(worker) && !final_name.is_empty() {
            return Some(TempName {
                final_name: final_name.into(),
                worker: worker.into(),
                job8: Some(job8.into()),
            });
        }
    }
    let p: Vec<&str> = core.rsplitn(3, '.').collect();
    match p[..] {
        [rand, worker, final_name] if hex8(rand) && worker_ok(worker) && !final_name.is_empty() => {
            Some(TempName {
                final_name: final_name.into(),
                worker: worker.into(),
                job8: None,
            })
        }
        _ => None,
    }
}

fn remove_stale(path: &Path) -> usize {
    match fs::remove_file(path) {
        Ok(()) => 1,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => {
            log::warn!(
                "could not remove the stale temporary {}: {e}",
                path.display()
            );
            0
        }
    }
}

/// Remove the temporaries of `job_id` beside `final_path` (any worker's):
/// before running a job taken over from another worker. How many.
pub fn remove_job_temps(final_path: &Path, job_id: &str) -> usize {
    let (Some(dir), Some(name)) = (final_path.parent(), final_path.file_name()) else {
        return 0;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    let name = name.to_string_lossy();
    let job8: String = job_id.chars().take(8).collect();
    let mut removed = 0;
    for entry in entries.flatten() {
        if let Some(t) = parse_temp(&entry.file_name().to_string_lossy()) {
            if t.final_name == name && t.job8.as_deref() == Some(job8.as_str()) {
                removed += remove_stale(&entry.path());
            }
        }
    }
    removed
}

/// Remove every temporary of `worker_id` under `<output_root>/embeddings`
/// (a walk of the directories; no stat of ordinary files): at start, what
/// an earlier life of this worker id left. How many.
pub fn remove_worker_temps(output_root: &Path, worker_id: &str) -> usize {
    let me = safe_worker_id(worker_id);
    let mut removed = 0;
    let mut dirs = vec![output_root.join(embedfleet_core::constants::OUTPUT_DIR)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() {
                dirs.push(entry.path());
            } else if let Some(t) = parse_temp(&entry.file_name().to_string_lossy()) {
                if t.worker == me {
                    removed += remove_stale(&entry.path());
                }
            }
        }
    }
    removed
}

fn io_err(what: &str, e: impl std::fmt::Display) -> WorkerError {
    WorkerError::Transient(format!("{what}: {e}"))
}

/// A file system error on the output path: permanent when the path can never
/// be written (a name too long, a loop), as in `workers/runtime.py`.
fn fs_err(what: &str, e: &std::io::Error) -> WorkerError {
    if crate::paths::never_opens(e) {
        WorkerError::BadInput(format!("{what}: the path can never be written ({e})"))
    } else {
        io_err(what, e)
    }
}

/// Writes one output atomically; dropped without `commit`, it removes its
/// temporary. The temporary is created with the first rows (or by `commit`
/// for an output without rows): a worker killed before leaves nothing.
pub struct OutputWriter {
    final_path: PathBuf,
    tmp: PathBuf,
    schema: SchemaRef,
    writer: Option<ArrowWriter<File>>,
    committed: bool,
}

impl OutputWriter {
    /// A writer of `final_path` for this worker and job; nothing is created yet.
    pub fn create(
        final_path: &Path,
        worker_id: &str,
        job_id: &str,
        id_type: Option<&DataType>,
    ) -> Result<Self> {
        if final_path.parent().is_none() {
            return Err(io_err("output", "has no directory"));
        }
        Ok(OutputWriter {
            final_path: final_path.to_path_buf(),
            tmp: temp_path(final_path, worker_id, job_id),
            schema: output_schema(id_type),
            writer: None,
            committed: false,
        })
    }

    /// The temporary file's path (it exists once rows were written).
    pub fn temp_file(&self) -> &Path {
        &self.tmp
    }

    fn open(&mut self) -> Result<&mut ArrowWriter<File>> {
        assert!(!self.committed, "writer used after commit");
        if self.writer.is_none() {
            let dir = self.final_path.parent().unwrap_or(Path::new("."));
            fs::create_dir_all(dir)
                .map_err(|e| fs_err(&format!("cannot create {}", dir.display()), &e))?;
            let file = File::create(&self.tmp)
                .map_err(|e| fs_err(&format!("cannot create {}", self.tmp.display()), &e))?;
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_created_by(format!("embedfleet-worker {}", crate::VERSION))
                .build();
            match ArrowWriter::try_new(file, self.schema.clone(), Some(props)) {
                Ok(w) => self.writer = Some(w),
                Err(e) => {
                    let _ = fs::remove_file(&self.tmp);
                    return Err(io_err("parquet writer", e));
                }
            }
        }
        Ok(self.writer.as_mut().expect("opened above"))
    }

    /// Append rows: absolute row numbers, ids, L2-normalised vectors (row-major).
    pub fn write(
        &mut self,
        rows: Vec<i64>,
        ids: Option<ArrayRef>,
        embeddings: Vec<f32>,
    ) -> Result<()> {
        let mut cols: Vec<ArrayRef> = vec![Arc::new(Int64Array::from(rows))];
        if let Some(ids) = ids {
            cols.push(ids);
        }
        let values = Arc::new(Float32Array::from(embeddings));
        let list = FixedSizeListArray::try_new(element(), EMBEDDING_DIM as i32, values, None)
            .map_err(|e| io_err("embeddings", e))?;
        cols.push(Arc::new(list));
        let batch = RecordBatch::try_new(self.schema.clone(), cols)
            .map_err(|e| io_err("output batch", e))?;
        let tmp = self.tmp.display().to_string();
        self.open()?
            .write(&batch)
            .map_err(|e| io_err(&format!("writing {tmp}"), e))
    }

    /// Close, fsync and rename into place; the output then exists in full.
    /// On failure the temporary is removed and the final name never touched.
    pub fn commit(mut self, meta: Vec<(String, String)>) -> Result<()> {
        self.open()?;
        let mut writer = self.writer.take().expect("opened above");
        self.committed = true;
        let done = self.finish(&mut writer, meta);
        drop(writer);
        let done = done.and_then(|()| self.rename());
        if done.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        done
    }

    fn finish(&self, writer: &mut ArrowWriter<File>, meta: Vec<(String, String)>) -> Result<()> {
        for (k, v) in meta {
            writer.append_key_value_metadata(KeyValue::new(k, v));
        }
        let tmp = self.tmp.display();
        writer
            .finish()
            .map_err(|e| io_err(&format!("closing {tmp}"), e))?;
        faults::reach("after_tmp_write");
        writer
            .inner()
            .sync_all()
            .map_err(|e| io_err(&format!("fsync {tmp}"), e))
    }

    fn rename(&self) -> Result<()> {
        fs::rename(&self.tmp, &self.final_path)
            .map_err(|e| fs_err(&format!("renaming {}", self.tmp.display()), &e))?;
        faults::reach("after_rename");
        match self.final_path.parent() {
            Some(dir) => fsync_dir(dir).map_err(|e| io_err(&format!("fsync {}", dir.display()), e)),
            None => Ok(()),
        }
    }
}

impl Drop for OutputWriter {
    fn drop(&mut self) {
        if self.writer.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("ef-output-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn hidden(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect();
        names.sort();
        names
    }

    #[test]
    fn temporary_names_carry_the_worker_and_the_job_and_parse_back() {
        let final_path = Path::new("/out/embeddings/s/x.rows-0-5.parquet");
        let tmp = temp_path(final_path, "rust host.1", "0123abcdffff");
        let name = tmp.file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(".x.rows-0-5.parquet.rust_host_1.0123abcd."));
        let t = parse_temp(&name).unwrap();
        assert_eq!(t.final_name, "x.rows-0-5.parquet");
        assert_eq!(t.worker, "rust_host_1");
        assert_eq!(t.job8.as_deref(), Some("0123abcd"));
        let old = parse_temp(".x.parquet.w-1.89abcdef.tmp").unwrap();
        assert_eq!((old.worker.as_str(), old.job8), ("w-1", None));
        for other in [
            "x.parquet",
            ".x.parquet",
            ".hidden.tmp",
            ".x.parquet.w.zz.tmp",
        ] {
            assert_eq!(parse_temp(other), None, "{other}");
        }
    }

    #[test]
    fn nothing_is_created_before_the_first_rows_and_a_dropped_writer_leaves_nothing() {
        let dir = tmp_dir("lazy");
        let final_path = dir.join("sub/a.parquet");
        let w = OutputWriter::create(&final_path, "w1", "0123abcd", None).unwrap();
        assert!(
            !dir.join("sub").exists(),
            "no directory or file before a write"
        );
        drop(w);
        let mut w = OutputWriter::create(&final_path, "w1", "0123abcd", None).unwrap();
        w.write(vec![0], None, vec![0.5; EMBEDDING_DIM]).unwrap();
        assert!(w.temp_file().is_file());
        assert_eq!(hidden(&dir.join("sub")).len(), 1);
        drop(w);
        assert!(hidden(&dir.join("sub")).is_empty());
        let w = OutputWriter::create(&final_path, "w1", "0123abcd", None).unwrap();
        w.commit(vec![]).unwrap();
        assert!(final_path.is_file() && hidden(&dir.join("sub")).is_empty());
    }

    #[test]
    fn stale_temporaries_go_by_job_or_by_worker_and_no_other() {
        let root = tmp_dir("stale");
        let dir = root.join("embeddings/s1/cats");
        fs::create_dir_all(&dir).unwrap();
        let final_path = dir.join("a.parquet");
        for name in [
            ".a.parquet.w1.0123abcd.00000001.tmp",
            ".a.parquet.w2.0123abcd.00000002.tmp",
            ".a.parquet.w2.99999999.00000003.tmp",
            ".b.parquet.w1.77777777.00000004.tmp",
            ".b.parquet.w1.00000005.tmp",
            ".b.parquet.xw1.77777777.00000006.tmp",
            ".notes",
        ] {
            fs::write(dir.join(name), b"").unwrap();
        }
        assert_eq!(remove_job_temps(&final_path, "0123abcd5555"), 2);
        assert_eq!(remove_worker_temps(&root, "w1"), 2);
        assert_eq!(
            hidden(&dir),
            [
                ".a.parquet.w2.99999999.00000003.tmp",
                ".b.parquet.xw1.77777777.00000006.tmp",
                ".notes"
            ]
        );
    }
}
