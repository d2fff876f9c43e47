// Twin: workers/reader.py (docs/parity.md)
//! Raw bytes of a string column, read below arrow (which refuses a string
//! column holding invalid UTF-8): the fallback that lets such a file be
//! embedded with U+FFFD replacement, as the Python worker does.

use std::fs::File;
use std::path::Path;

use arrow_array::BinaryArray;
use parquet::column::reader::{get_typed_column_reader, ColumnReaderImpl};
use parquet::data_type::{ByteArray, ByteArrayType};
use parquet::file::reader::{FileReader, SerializedFileReader};

use crate::error::{Result, WorkerError};

/// Reads rows `[from, end)` of one flat BYTE_ARRAY column, chunk by chunk.
pub struct RawText {
    rel: String,
    file: SerializedFileReader<File>,
    leaf: usize,
    max_def: i16,
    groups: Vec<(u64, u64)>,
    current: Option<(usize, ColumnReaderImpl<ByteArrayType>)>,
    pos: u64,
    end: u64,
}

impl RawText {
    pub fn open(rel: &str, path: &Path, column: &str, from: u64, end: u64) -> Result<Self> {
        let bad = |e: &dyn std::fmt::Display| {
            WorkerError::bad_input(rel, format!("corrupt parquet data ({e})"))
        };
        let file = File::open(path).map_err(|e| bad(&e))?;
        let file = SerializedFileReader::new(file).map_err(|e| bad(&e))?;
        let descr = file.metadata().file_metadata().schema_descr_ptr();
        let leaf = (0..descr.num_columns())
            .find(|&i| descr.column(i).path().string() == column)
            .ok_or_else(|| {
                WorkerError::bad_input(rel, format!("column {column:?} is not a flat column"))
            })?;
        let max_def = descr.column(leaf).max_def_level();
        let mut groups = Vec::new();
        let mut first = 0u64;
        for rg in file.metadata().row_groups() {
            let n = rg.num_rows().max(0) as u64;
            groups.push((first, n));
            first += n;
        }
        Ok(RawText {
            rel: rel.to_string(),
            file,
            leaf,
            max_def,
            groups,
            current: None,
            pos: from,
            end,
        })
    }

    fn bad(&self, e: impl std::fmt::Display) -> WorkerError {
        WorkerError::bad_input(&self.rel, format!("corrupt parquet data ({e})"))
    }

    /// The column reader of the row group holding `pos`, positioned at it.
    fn position(&mut self) -> Result<(usize, u64)> {
        let g = self
            .groups
            .iter()
            .position(|(f, n)| self.pos >= *f && self.pos < f + n)
            .ok_or_else(|| self.bad("row out of range"))?;
        if self.current.as_ref().is_none_or(|(cur, _)| *cur != g) {
            let rg = self.file.get_row_group(g).map_err(|e| self.bad(e))?;
            let col = rg.get_column_reader(self.leaf).map_err(|e| self.bad(e))?;
            let mut reader = get_typed_column_reader::<ByteArrayType>(col);
            let skip = (self.pos - self.groups[g].0) as usize;
            if reader.skip_records(skip).map_err(|e| self.bad(e))? != skip {
                return Err(self.bad("row group shorter than its metadata"));
            }
            self.current = Some((g, reader));
        }
        Ok((g, self.groups[g].0 + self.groups[g].1))
    }

    /// The next at most `n` rows as a binary array (nulls kept).
    pub fn next_chunk(&mut self, n: usize) -> Result<Option<BinaryArray>> {
        if self.pos >= self.end {
            return Ok(None);
        }
        let want = (n as u64).min(self.end - self.pos) as usize;
        let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(want);
        while out.len() < want {
            let (_, group_end) = self.position()?;
            let take = ((want - out.len()) as u64).min(group_end - self.pos) as usize;
            let (mut defs, mut vals): (Vec<i16>, Vec<ByteArray>) = (Vec::new(), Vec::new());
            let reader = &mut self.current.as_mut().expect("positioned above").1;
            let (records, _, _) = reader
                .read_records(take, Some(&mut defs), None, &mut vals)
                .map_err(|e| self.bad(e))?;
            if records == 0 {
                return Err(self.bad("column ended early"));
            }
            let mut values = vals.into_iter();
            for i in 0..records {
                let present = self.max_def == 0 || defs.get(i) == Some(&self.max_def);
                out.push(if present {
                    values.next().map(|v| v.data().to_vec())
                } else {
                    None
                });
            }
            self.pos += records as u64;
            if self.pos >= group_end {
                self.current = None;
            }
        }
        Ok(Some(BinaryArray::from_iter(out)))
    }
}
