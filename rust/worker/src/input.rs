// Twin: workers/reader.py (docs/parity.md)
//! Read one job's row range of the text (and id) column with arrow-rs, in
//! chunks, after checking that the file is a readable parquet with the
//! expected columns (twin of `workers/reader.py`). Every bad-input case is a
//! `BadInput` whose message names the file.
//!
//! A string column holding invalid UTF-8 (which arrow refuses) is read again
//! below arrow (`input_raw`) from the failing chunk on, so its texts are
//! decoded with replacement and counted instead of failing the whole file, as
//! the Python worker does.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BinaryArray, BinaryViewArray, LargeBinaryArray, LargeStringArray, RecordBatch,
    StringArray, StringViewArray,
};
use arrow_schema::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReader,
    ParquetRecordBatchReaderBuilder,
};
use parquet::arrow::ProjectionMask;
use parquet::file::metadata::ParquetMetaData;

use crate::clean::Cell;
use crate::error::{Result, WorkerError};
use crate::input_raw::RawText;

/// A validated input file and the row range a job covers.
#[derive(Debug, Clone)]
pub struct InputPart {
    pub rel: String,
    pub path: PathBuf,
    pub column: String,
    pub id_column: Option<String>,
    /// Arrow type of the id column, copied as is into the output.
    pub id_type: Option<DataType>,
    pub start: u64,
    pub end: u64,
    /// Uncompressed bytes per row of the text column (for memory planning).
    pub text_bytes_per_row: u64,
    meta: ArrowReaderMetadata,
}

impl InputPart {
    pub fn rows(&self) -> u64 {
        self.end - self.start
    }
}

/// Consecutive rows of the part: the text cells start at absolute row `start`.
pub struct Chunk {
    pub start: u64,
    pub text: ArrayRef,
    pub ids: Option<ArrayRef>,
}

impl Chunk {
    /// The text column as cleaning sees it.
    pub fn cells(&self) -> Vec<Cell<'_>> {
        fn bytes<'a, A: Array>(a: &'a A, get: impl Fn(&'a A, usize) -> &'a [u8]) -> Vec<Cell<'a>> {
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        Cell::Null
                    } else {
                        Cell::Bytes(get(a, i))
                    }
                })
                .collect()
        }
        fn text<'a, A: Array>(a: &'a A, get: impl Fn(&'a A, usize) -> &'a str) -> Vec<Cell<'a>> {
            (0..a.len())
                .map(|i| {
                    if a.is_null(i) {
                        Cell::Null
                    } else {
                        Cell::Text(get(a, i))
                    }
                })
                .collect()
        }
        let any = self.text.as_any();
        if let Some(a) = any.downcast_ref::<StringArray>() {
            text(a, |a, i| a.value(i))
        } else if let Some(a) = any.downcast_ref::<LargeStringArray>() {
            text(a, |a, i| a.value(i))
        } else if let Some(a) = any.downcast_ref::<StringViewArray>() {
            text(a, |a, i| a.value(i))
        } else if let Some(a) = any.downcast_ref::<BinaryArray>() {
            bytes(a, |a, i| a.value(i))
        } else if let Some(a) = any.downcast_ref::<LargeBinaryArray>() {
            bytes(a, |a, i| a.value(i))
        } else if let Some(a) = any.downcast_ref::<BinaryViewArray>() {
            bytes(a, |a, i| a.value(i))
        } else {
            (0..self.text.len()).map(|_| Cell::Null).collect() // the Null type: every row is null
        }
    }
}

fn open_error(rel: &str, e: &std::io::Error) -> WorkerError {
    match e.kind() {
        ErrorKind::NotFound | ErrorKind::PermissionDenied | ErrorKind::IsADirectory => {
            WorkerError::bad_input(rel, format!("cannot open input ({e})"))
        }
        _ => WorkerError::Transient(format!("{rel}: I/O error while reading ({e})")),
    }
}

fn first_line(e: impl std::fmt::Display) -> String {
    e.to_string().lines().next().unwrap_or_default().to_string()
}

fn is_text(t: &DataType) -> bool {
    matches!(
        t,
        DataType::Utf8
            | DataType::LargeUtf8
            | DataType::Utf8View
            | DataType::Binary
            | DataType::LargeBinary
            | DataType::BinaryView
            | DataType::Null
    )
}

/// The type a text column is read as: dictionaries are read as their values.
fn text_type(t: &DataType) -> Option<DataType> {
    match t {
        DataType::Dictionary(_, v) if is_text(v) => Some(v.as_ref().clone()),
        t if is_text(t) => Some(t.clone()),
        _ => None,
    }
}

fn text_bytes_per_row(meta: &ParquetMetaData, column: &str) -> u64 {
    let (mut total, mut rows) = (0i64, 0i64);
    for rg in meta.row_groups() {
        rows += rg.num_rows();
        total += rg
            .columns()
            .iter()
            .filter(|c| c.column_path().string() == column)
            .map(|c| c.uncompressed_size())
            .sum::<i64>();
    }
    if rows > 0 {
        (total / rows).max(0) as u64
    } else {
        0
    }
}

/// The reader metadata with the text column read as plain values.
fn without_dictionary(
    rel: &str,
    meta: ArrowReaderMetadata,
    column: &str,
    read_as: DataType,
) -> Result<ArrowReaderMetadata> {
    let schema = meta.schema().clone();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if f.name() == column {
                f.as_ref().clone().with_data_type(read_as.clone())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    let options = ArrowReaderOptions::new().with_schema(Arc::new(Schema::new_with_metadata(
        fields,
        schema.metadata().clone(),
    )));
    ArrowReaderMetadata::try_new(meta.metadata().clone(), options).map_err(|e| {
        WorkerError::bad_input(
            rel,
            format!("cannot read column {column:?} as text ({})", first_line(e)),
        )
    })
}

/// Check the file and the job's columns and range.
pub fn open_part(
    rel: &str,
    path: &Path,
    column: &str,
    id_column: Option<&str>,
    rows: Option<(u64, u64)>,
) -> Result<InputPart> {
    let file = File::open(path).map_err(|e| open_error(rel, &e))?;
    let meta = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new()).map_err(|e| {
        WorkerError::bad_input(
            rel,
            format!("not a readable parquet file ({})", first_line(e)),
        )
    })?;
    let schema = meta.schema().clone();
    for name in std::iter::once(column).chain(id_column) {
        if schema.index_of(name).is_err() {
            let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(WorkerError::bad_input(
                rel,
                format!("missing column {name:?} (columns: {})", names.join(", ")),
            ));
        }
    }
    let text_field = schema.field_with_name(column).expect("checked above");
    let read_as = text_type(text_field.data_type()).ok_or_else(|| {
        WorkerError::bad_input(
            rel,
            format!(
                "column {column:?} has type {}, expected a string or binary column",
                text_field.data_type()
            ),
        )
    })?;
    let n = meta.metadata().file_metadata().num_rows().max(0) as u64;
    let (start, end) = rows.unwrap_or((0, n));
    if end > n {
        return Err(WorkerError::bad_input(
            rel,
            format!("row range [{start}, {end}) is beyond the file's {n} rows"),
        ));
    }
    let meta = if &read_as == text_field.data_type() {
        meta
    } else {
        without_dictionary(rel, meta, column, read_as)?
    };
    let id_type = id_column.map(|c| {
        schema
            .field_with_name(c)
            .expect("checked above")
            .data_type()
            .clone()
    });
    Ok(InputPart {
        rel: rel.to_string(),
        path: path.to_path_buf(),
        column: column.to_string(),
        id_column: id_column.map(str::to_string),
        id_type,
        start,
        end,
        text_bytes_per_row: text_bytes_per_row(meta.metadata(), column),
        meta,
    })
}

/// An arrow reader over rows `[from, part.end)` of some columns of the part.
fn arrow_reader(
    part: &InputPart,
    from: u64,
    columns: &[&str],
    chunk_rows: usize,
) -> Result<ParquetRecordBatchReader> {
    let bad = |e: &dyn std::fmt::Display| {
        WorkerError::bad_input(
            &part.rel,
            format!("corrupt parquet data ({})", first_line(e)),
        )
    };
    let file = File::open(&part.path).map_err(|e| open_error(&part.rel, &e))?;
    let (mut groups, mut row, mut skip) = (Vec::new(), 0u64, 0u64);
    for (g, rg) in part.meta.metadata().row_groups().iter().enumerate() {
        let n = rg.num_rows().max(0) as u64;
        if row + n > from && row < part.end {
            if groups.is_empty() {
                skip = from - row;
            }
            groups.push(g);
        }
        row += n;
    }
    let schema = part.meta.schema();
    let roots: Vec<usize> = columns
        .iter()
        .map(|c| schema.index_of(c).expect("checked at open"))
        .collect();
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, part.meta.clone());
    let mask = ProjectionMask::roots(builder.parquet_schema(), roots);
    builder
        .with_projection(mask)
        .with_row_groups(groups)
        .with_offset(skip as usize)
        .with_limit((part.end - from) as usize)
        .with_batch_size(chunk_rows)
        .build()
        .map_err(|e| bad(&e))
}

/// Where the chunks come from: arrow, or raw bytes for the text column once
/// arrow has refused its UTF-8 (ids still through arrow).
enum Source {
    Arrow(ParquetRecordBatchReader),
    Raw {
        text: Box<RawText>,
        ids: Option<ParquetRecordBatchReader>,
    },
    Done,
}

/// Reads a part's rows in chunks of at most `chunk_rows`.
pub struct ChunkReader {
    part: InputPart,
    source: Source,
    chunk_rows: usize,
    next_start: u64,
}

fn is_utf8_error(e: &impl std::fmt::Display) -> bool {
    let m = e.to_string().to_ascii_lowercase();
    m.contains("utf-8") || m.contains("utf8")
}

impl ChunkReader {
    pub fn new(part: &InputPart, chunk_rows: usize) -> Result<Self> {
        let chunk_rows = chunk_rows.max(1);
        let source = if part.rows() == 0 {
            Source::Done
        } else {
            let columns: Vec<&str> = std::iter::once(part.column.as_str())
                .chain(part.id_column.as_deref())
                .collect();
            Source::Arrow(arrow_reader(part, part.start, &columns, chunk_rows)?)
        };
        Ok(ChunkReader {
            part: part.clone(),
            source,
            chunk_rows,
            next_start: part.start,
        })
    }

    fn chunk(&mut self, batch: RecordBatch) -> Chunk {
        let schema = batch.schema();
        let column = |name: &str| schema.index_of(name).map(|i| batch.column(i).clone());
        let text = column(&self.part.column).unwrap_or_else(|_| batch.column(0).clone());
        let ids = self.part.id_column.as_deref().and_then(|c| column(c).ok());
        let c = Chunk {
            start: self.next_start,
            text,
            ids,
        };
        self.next_start += batch.num_rows() as u64;
        c
    }

    /// Switch to raw reading from the current row on.
    fn go_raw(&mut self) -> Result<()> {
        let p = &self.part;
        let text = RawText::open(&p.rel, &p.path, &p.column, self.next_start, p.end)?;
        let ids = match &p.id_column {
            Some(c) => Some(arrow_reader(
                p,
                self.next_start,
                &[c.as_str()],
                self.chunk_rows,
            )?),
            None => None,
        };
        self.source = Source::Raw {
            text: Box::new(text),
            ids,
        };
        Ok(())
    }

    fn next_raw(&mut self) -> Result<Option<Chunk>> {
        let Source::Raw { text, ids } = &mut self.source else {
            return Ok(None);
        };
        let Some(text) = text.next_chunk(self.chunk_rows)? else {
            return Ok(None);
        };
        let ids = match ids {
            Some(reader) => match reader.next() {
                Some(Ok(b)) if b.num_rows() == text.len() => Some(b.column(0).clone()),
                Some(Err(e)) => {
                    return Err(WorkerError::bad_input(
                        &self.part.rel,
                        format!("corrupt parquet data ({})", first_line(e)),
                    ))
                }
                _ => {
                    return Err(WorkerError::bad_input(
                        &self.part.rel,
                        "id column and text column disagree in length",
                    ))
                }
            },
            None => None,
        };
        let c = Chunk {
            start: self.next_start,
            text: Arc::new(text),
            ids,
        };
        self.next_start += c.text.len() as u64;
        Ok(Some(c))
    }

    fn advance(&mut self) -> Result<Option<Chunk>> {
        if let Source::Arrow(reader) = &mut self.source {
            match reader.next() {
                None => return Ok(None),
                Some(Ok(b)) => return Ok(Some(self.chunk(b))),
                Some(Err(e)) if is_utf8_error(&e) => {
                    log::info!(
                        "{}: column {:?} holds invalid UTF-8: reading it as bytes",
                        self.part.rel,
                        self.part.column
                    );
                    self.go_raw()?;
                }
                Some(Err(e)) => {
                    return Err(WorkerError::bad_input(
                        &self.part.rel,
                        format!("corrupt parquet data ({})", first_line(e)),
                    ))
                }
            }
        }
        self.next_raw()
    }
}

impl Iterator for ChunkReader {
    type Item = Result<Chunk>;

    fn next(&mut self) -> Option<Self::Item> {
        if matches!(self.source, Source::Done) {
            return None;
        }
        let got = self.advance();
        if !matches!(got, Ok(Some(_))) {
            self.source = Source::Done;
        }
        got.transpose()
    }
}
