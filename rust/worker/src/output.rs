//! The output file of a job (twin of `workers/writer.py`): `row` int64,
//! optional `id` (the input's Arrow type), `embedding`
//! `FixedSizeList<float32, 384>`, provenance in the key-value metadata.
//! Written chunk by chunk to a hidden per-attempt temporary name in the
//! output directory, fsynced, renamed into place and the directory fsynced.

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

/// Writes one output atomically; dropped without `commit`, it removes its temporary.
pub struct OutputWriter {
    final_path: PathBuf,
    tmp: PathBuf,
    schema: SchemaRef,
    writer: Option<ArrowWriter<File>>,
}

impl OutputWriter {
    pub fn create(final_path: &Path, worker_id: &str, id_type: Option<&DataType>) -> Result<Self> {
        let dir = final_path
            .parent()
            .ok_or_else(|| io_err("output", "has no directory"))?;
        fs::create_dir_all(dir)
            .map_err(|e| fs_err(&format!("cannot create {}", dir.display()), &e))?;
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
        let name = final_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(format!(".{name}.{safe}.{}.tmp", random_hex()));
        let file = File::create(&tmp)
            .map_err(|e| fs_err(&format!("cannot create {}", tmp.display()), &e))?;
        let schema = output_schema(id_type);
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_created_by(format!("embedfleet-worker {}", crate::VERSION))
            .build();
        let writer = ArrowWriter::try_new(file, schema.clone(), Some(props))
            .map_err(|e| io_err("parquet writer", e))?;
        Ok(OutputWriter {
            final_path: final_path.to_path_buf(),
            tmp,
            schema,
            writer: Some(writer),
        })
    }

    /// Append rows: absolute row numbers, ids, L2-normalised vectors (row-major).
    pub fn write(
        &mut self,
        rows: Vec<i64>,
        ids: Option<ArrayRef>,
        embeddings: Vec<f32>,
    ) -> Result<()> {
        let writer = self.writer.as_mut().expect("writer used after commit");
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
        writer
            .write(&batch)
            .map_err(|e| io_err(&format!("writing {}", self.tmp.display()), e))
    }

    /// Close, fsync and rename into place; the output then exists in full.
    /// On failure the temporary is removed and the final name never touched.
    pub fn commit(mut self, meta: Vec<(String, String)>) -> Result<()> {
        let mut writer = self.writer.take().expect("commit called twice");
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
