//! Parquet footers, read directly: one `pread` of the file's tail holds the
//! footer of any small file, so a footer costs an open and one read. Only the
//! metadata is decoded: no page is ever read.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use crate::constants::META_PREFIX;

/// Bytes read from the end of a file in the first read.
const TAIL_BYTES: u64 = 64 * 1024;
/// "PAR1": the magic number that ends a plain Parquet file.
const MAGIC: &[u8; 4] = b"PAR1";
/// "PARE": the magic of a file with an encrypted footer.
const MAGIC_ENCRYPTED: &[u8; 4] = b"PARE";

/// One row group of an input: what row-range splitting needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowGroup {
    pub rows: u64,
    /// Compressed bytes of the group's column chunks.
    pub bytes: u64,
}

/// What an output says about how it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    pub fingerprint: String,
    /// Shared: a tree holds few distinct models and many outputs.
    pub model: Arc<str>,
}

/// Read and decode the footer of the Parquet file at `path` of `size` bytes.
/// The error is a short problem statement (the caller adds the path).
pub fn read_metadata(path: &Path, size: u64) -> Result<ParquetMetaData, String> {
    if size < 12 {
        return Err(format!("not a parquet file ({size} bytes, too small)"));
    }
    let file = File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let tail_len = size.min(TAIL_BYTES);
    let mut tail = vec![0u8; tail_len as usize];
    file.read_exact_at(&mut tail, size - tail_len)
        .map_err(|e| format!("cannot read: {e}"))?;
    let end = &tail[tail.len() - 8..];
    if &end[4..] == MAGIC_ENCRYPTED {
        return Err("encrypted parquet footers are not supported".into());
    }
    if &end[4..] != MAGIC {
        return Err("not a parquet file (no PAR1 magic at the end)".into());
    }
    let footer_len = u64::from(u32::from_le_bytes([end[0], end[1], end[2], end[3]]));
    if footer_len + 12 > size {
        return Err(format!(
            "corrupt parquet footer (length {footer_len} exceeds the file)"
        ));
    }
    let decode = |buf: &[u8]| {
        ParquetMetaDataReader::decode_metadata(buf)
            .map_err(|e| format!("corrupt parquet footer: {e}"))
    };
    if footer_len + 8 <= tail_len {
        let start = (tail_len - 8 - footer_len) as usize;
        decode(&tail[start..tail.len() - 8])
    } else {
        let mut buf = vec![0u8; footer_len as usize];
        file.read_exact_at(&mut buf, size - 8 - footer_len)
            .map_err(|e| format!("cannot read: {e}"))?;
        decode(&buf)
    }
}

/// Row groups of an input file.
pub fn row_groups(md: &ParquetMetaData) -> Vec<RowGroup> {
    md.row_groups()
        .iter()
        .map(|rg| RowGroup {
            rows: rg.num_rows().max(0) as u64,
            bytes: rg.compressed_size().max(0) as u64,
        })
        .collect()
}

/// Fingerprint and model an output was made from (its embedfleet key-value
/// metadata); `Err` when it carries none.
pub fn provenance(md: &ParquetMetaData) -> Result<Provenance, String> {
    let kv = md.file_metadata().key_value_metadata();
    let get = |key: &str| {
        kv.and_then(|kv| {
            kv.iter()
                .find(|e| e.key.strip_prefix(META_PREFIX) == Some(key))
        })
        .and_then(|e| e.value.clone())
    };
    match (get("input_fingerprint"), get("model_id")) {
        (Some(fingerprint), Some(model)) => Ok(Provenance {
            fingerprint,
            model: Arc::from(model),
        }),
        _ => Err("output carries no embedfleet provenance metadata".into()),
    }
}
