// Twin: bus/messages.py (docs/parity.md)
//! Job messages: the JSON on the lane streams, and the derivation of job ids
//! and output paths (Python twin: `bus/messages.py`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::constants::{DEFAULT_COLUMN, DEFAULT_LANE, INPUT_DIR, OUTPUT_DIR, PROTOCOL_VERSION};
use crate::error::CoreError;
use crate::wire;

/// One unit of embedding work, in wire order. The wire form (version 2)
/// leaves out `id` and `out`, which readers derive from the other fields,
/// and every field at its default; version 1 messages (every field) are
/// still read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub v: u32,
    #[serde(skip_serializing, default)]
    pub id: String,
    pub path: String,
    #[serde(skip_serializing, default)]
    pub out: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<(u64, u64)>,
    pub fp: String,
    pub model: String,
    #[serde(default = "default_col", skip_serializing_if = "is_default_col")]
    pub col: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idcol: Option<String>,
    #[serde(default = "default_lane", skip_serializing_if = "is_default_lane")]
    pub lane: String,
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub attempt: u32,
}

fn default_col() -> String {
    DEFAULT_COLUMN.into()
}
fn is_default_col(c: &str) -> bool {
    c == DEFAULT_COLUMN
}
fn default_lane() -> String {
    DEFAULT_LANE.into()
}
fn is_default_lane(l: &str) -> bool {
    l == DEFAULT_LANE
}
fn one() -> u32 {
    1
}
fn is_one(n: &u32) -> bool {
    *n == 1
}

/// Deterministic id: 32 hex digits of SHA-256 over the job's identity.
pub fn job_id(path: &str, rows: Option<(u64, u64)>, fingerprint: &str, model: &str) -> String {
    let (s, e) = match rows {
        Some((s, e)) => (s.to_string(), e.to_string()),
        None => (String::new(), String::new()),
    };
    let material = ["v1", path, &s, &e, fingerprint, model].join("\u{1f}");
    hex::encode(&Sha256::digest(material.as_bytes())[..16])
}

/// Refuse a job path that could escape its dataset root.
pub fn check_relative(path: &str) -> Result<(), CoreError> {
    if path.is_empty() || path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return Err(CoreError::UnsafePath(format!(
            "{path:?}: job paths are relative POSIX paths"
        )));
    }
    if path
        .split('/')
        .any(|p| p.is_empty() || p == "." || p == "..")
    {
        return Err(CoreError::UnsafePath(format!(
            "{path:?}: job paths may not contain empty, '.' or '..' parts"
        )));
    }
    Ok(())
}

/// Output path for an input path and optional row range.
pub fn output_path(path: &str, rows: Option<(u64, u64)>) -> Result<String, CoreError> {
    check_relative(path)?;
    let rest = path
        .strip_prefix(INPUT_DIR)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| {
            CoreError::UnsafePath(format!("{path}: input paths start with {INPUT_DIR}/"))
        })?;
    let rel = format!("{OUTPUT_DIR}/{rest}");
    Ok(match rows {
        None => rel,
        Some((s, e)) => {
            let (stem, ext) = split_ext(&rel);
            format!("{stem}.rows-{s}-{e}{ext}")
        }
    })
}

/// Split like Python's `posixpath.splitext`: the extension starts at the last
/// dot of the last component, unless that component starts with it.
fn split_ext(p: &str) -> (&str, &str) {
    let base_start = p.rfind('/').map(|i| i + 1).unwrap_or(0);
    let base = &p[base_start..];
    let lead = base.len() - base.trim_start_matches('.').len();
    match base[lead..].rfind('.') {
        Some(i) => p.split_at(base_start + lead + i),
        None => (p, ""),
    }
}

impl Job {
    /// A new job with id and output path derived from its identity.
    pub fn create(
        path: &str,
        fingerprint: &str,
        model: &str,
        rows: Option<(u64, u64)>,
        column: &str,
        id_column: Option<&str>,
        lane: &str,
    ) -> Result<Job, CoreError> {
        Ok(Job {
            v: PROTOCOL_VERSION,
            id: job_id(path, rows, fingerprint, model),
            out: output_path(path, rows)?,
            path: path.to_string(),
            rows,
            fp: fingerprint.to_string(),
            model: model.to_string(),
            col: column.to_string(),
            idcol: id_column.map(str::to_string),
            lane: lane.to_string(),
            attempt: 1,
        })
    }

    /// Compact JSON, keys in wire order.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a Job always serialises")
    }

    /// Parse and validate a wire message (`wire.rs`): `InvalidMessage`
    /// with a stable reason if it is bad.
    pub fn from_json(raw: &str) -> Result<Job, CoreError> {
        Job::from_bytes(raw.as_bytes())
    }

    /// As `from_json`, for the bytes of a stream entry (not UTF-8: refused).
    pub fn from_bytes(raw: &[u8]) -> Result<Job, CoreError> {
        let d = wire::decode(raw)?;
        let path = wire::required_text(&d, "path")?;
        output_path(&path, None).map_err(|e| wire::invalid(wire::UNSAFE_PATH, e.to_string()))?;
        wire::check_path_length(&path)?;
        let rows = wire::rows(&d)?;
        let fp = wire::required_text(&d, "fp")?;
        let model = wire::required_text(&d, "model")?;
        Ok(Job {
            v: PROTOCOL_VERSION,
            id: job_id(&path, rows, &fp, &model),
            out: output_path(&path, rows)?,
            col: wire::optional_text(&d, "col")?.unwrap_or_else(default_col),
            idcol: wire::optional_text(&d, "idcol")?,
            lane: wire::lane(&d)?,
            attempt: wire::attempt(&d)?,
            path,
            rows,
            fp,
            model,
        })
    }

    /// The same job, one attempt later.
    pub fn next_attempt(&self, attempt: u32) -> Job {
        Job {
            attempt,
            ..self.clone()
        }
    }
}
