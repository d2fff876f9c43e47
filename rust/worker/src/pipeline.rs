// Twin: workers/pipeline.py (docs/parity.md)
//! One embedding job, from the job message to the output file (twin of
//! `workers/pipeline.py`): skip if the output is up to date, check model and
//! input, then read, clean, deduplicate, reuse what the fleet stored, embed
//! and write chunk by chunk, calling `checkpoint` between chunks (and while
//! waiting for texts other workers compute) so a lost lease can stop it
//! early.
//!
//! Pipelined: a reader thread decodes chunk n+1 and a writer thread encodes
//! and writes chunk n-1 while this thread embeds chunk n; every step keeps
//! its order, so the output is the same file as `run_unpipelined`'s. A job
//! that stops early (lost lease, error) joins both threads before the
//! output writer is dropped, which removes its temporary file.

use std::sync::mpsc::{sync_channel, Receiver};
use std::time::Instant;

use arrow_array::{ArrayRef, UInt32Array};
use embedfleet_core::constants::{EMBEDDING_DIM, META_PREFIX};
use embedfleet_core::Job;

use crate::batching::{embed_rows, DedupCache, Embedder};
use crate::clean::{clean, Counts};
use crate::error::{Result, WorkerError};
use crate::input::{open_part, Chunk, ChunkReader, InputPart};
use crate::limits::MemoryBudget;
use crate::output::{metadata, up_to_date, OutputWriter, Provenance};
use crate::paths::{fingerprint, DataRoots};
use crate::reuse::{FleetReuse, ReuseStore};

pub const DEFAULT_CHUNK_ROWS: usize = 32_768;
pub const MIN_CHUNK_ROWS: usize = 1_024;
/// Working bytes per row besides its text: the embedding twice plus indexes.
const ROW_OVERHEAD: u64 = 2 * EMBEDDING_DIM as u64 * 4 + 64;
const DEDUP_BYTES: u64 = 256 << 20;

/// What a finished job reports to the bus and the journal.
#[derive(Debug, Clone, PartialEq)]
pub struct JobResult {
    pub rows: u64,
    pub skipped: bool,
    pub counts: Counts,
    pub seconds: f64,
}

/// Turns a job into its output file.
pub struct Pipeline {
    pub roots: DataRoots,
    pub embedder: Box<dyn Embedder>,
    pub provenance: Provenance,
    pub memory: MemoryBudget,
    pub chunk_rows: usize,
    /// The fleet's reuse store; `None` with `--no-reuse` (the job then
    /// deduplicates within itself only).
    pub reuse: Option<Box<dyn ReuseStore>>,
}

fn counts_from(meta: &std::collections::HashMap<String, String>) -> Counts {
    Counts::from_fields(|k| {
        meta.get(&format!("{META_PREFIX}{k}"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

/// One chunk's output rows: absolute row numbers, ids, embeddings.
type Rows = (Vec<i64>, Option<ArrayRef>, Vec<f32>);

impl Pipeline {
    pub fn run(
        &mut self,
        job: &Job,
        checkpoint: &mut dyn FnMut() -> Result<()>,
    ) -> Result<JobResult> {
        self.run_with(job, checkpoint, true)
    }

    /// The same job one step after another on this thread: what `run`'s
    /// output must equal byte for byte (tests compare the two).
    pub fn run_unpipelined(
        &mut self,
        job: &Job,
        checkpoint: &mut dyn FnMut() -> Result<()>,
    ) -> Result<JobResult> {
        self.run_with(job, checkpoint, false)
    }

    fn run_with(
        &mut self,
        job: &Job,
        checkpoint: &mut dyn FnMut() -> Result<()>,
        pipelined: bool,
    ) -> Result<JobResult> {
        let t0 = Instant::now();
        let out = self.roots.output(&job.out)?;
        if let Some(meta) = up_to_date(&out, job) {
            let counts = counts_from(&meta);
            return Ok(JobResult {
                rows: counts.rows_embedded,
                skipped: true,
                counts,
                seconds: t0.elapsed().as_secs_f64(),
            });
        }
        let part = self.open(job)?;
        let per_row = 3 * part.text_bytes_per_row + ROW_OVERHEAD;
        let smallest = (MIN_CHUNK_ROWS as u64).min(part.rows().max(1));
        self.memory.require(smallest * per_row, &job.path)?;
        let chunk_rows = self
            .memory
            .fit(self.chunk_rows, per_row, MIN_CHUNK_ROWS, 0.5);
        let id_type = job.idcol.as_ref().and(part.id_type.as_ref());
        let mut writer = OutputWriter::create(&out, &self.provenance.worker_id, &job.id, id_type)?;
        let counts = if pipelined {
            self.embed_part_pipelined(&part, chunk_rows, &mut writer, checkpoint)?
        } else {
            self.embed_part(&part, chunk_rows, &mut writer, checkpoint)?
        };
        checkpoint()?;
        writer.commit(metadata(
            job,
            (part.start, part.end),
            &self.provenance,
            &counts,
        ))?;
        Ok(JobResult {
            rows: counts.rows_embedded,
            skipped: false,
            counts,
            seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// Read, clean, embed and write the part chunk by chunk; the counts.
    fn embed_part(
        &mut self,
        part: &InputPart,
        chunk_rows: usize,
        writer: &mut OutputWriter,
        checkpoint: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Counts> {
        let mut cache = DedupCache::new(self.dedup_budget());
        let mut counts = Counts::default();
        let embedder = self.embedder.as_mut();
        let (model, precision) = (
            embedder.model_id().to_string(),
            embedder.precision().to_string(),
        );
        let store = self.reuse.as_deref_mut().map(|s| s as &mut dyn ReuseStore);
        let mut fleet = FleetReuse::new(store, &model, &precision, &self.provenance.worker_id);
        for chunk in ChunkReader::new(part, chunk_rows)? {
            checkpoint()?;
            let mut step = ChunkStep {
                embedder: &mut *embedder,
                cache: &mut cache,
                fleet: &mut fleet,
                checkpoint: &mut *checkpoint,
            };
            step.write(&chunk?, writer, &mut counts)?;
        }
        Ok(counts)
    }

    /// `embed_part` on three threads: read ahead, embed here, write behind.
    fn embed_part_pipelined(
        &mut self,
        part: &InputPart,
        chunk_rows: usize,
        writer: &mut OutputWriter,
        checkpoint: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Counts> {
        let reader = ChunkReader::new(part, chunk_rows)?;
        let mut cache = DedupCache::new(self.dedup_budget());
        let mut counts = Counts::default();
        let embedder = self.embedder.as_mut();
        let (model, precision) = (
            embedder.model_id().to_string(),
            embedder.precision().to_string(),
        );
        let store = self.reuse.as_deref_mut().map(|s| s as &mut dyn ReuseStore);
        let mut fleet = FleetReuse::new(store, &model, &precision, &self.provenance.worker_id);
        std::thread::scope(|scope| {
            let (chunk_tx, chunks) = sync_channel::<Result<Chunk>>(1);
            let (rows_tx, rows_rx) = sync_channel::<Rows>(1);
            std::thread::Builder::new()
                .name("read-ahead".into())
                .spawn_scoped(scope, move || {
                    for chunk in reader {
                        if chunk_tx.send(chunk).is_err() {
                            return; // the job stopped: read no further
                        }
                    }
                })
                .map_err(|e| WorkerError::Transient(format!("reader thread: {e}")))?;
            let written = std::thread::Builder::new()
                .name("write-behind".into())
                .spawn_scoped(scope, move || write_all(writer, &rows_rx))
                .map_err(|e| WorkerError::Transient(format!("writer thread: {e}")))?;
            let embedded = (|| {
                for chunk in chunks {
                    checkpoint()?;
                    let mut step = ChunkStep {
                        embedder: &mut *embedder,
                        cache: &mut cache,
                        fleet: &mut fleet,
                        checkpoint: &mut *checkpoint,
                    };
                    if let Some(rows) = step.embed(&chunk?, &mut counts)? {
                        if rows_tx.send(rows).is_err() {
                            break; // the writer failed: its error is below
                        }
                    }
                }
                Ok(())
            })();
            drop(rows_tx);
            let written = written
                .join()
                .unwrap_or_else(|_| Err(WorkerError::Transient("writer thread panicked".into())));
            embedded.and(written)
        })?;
        Ok(counts)
    }

    /// Check the model and the input, and open the job's part of the file.
    fn open(&self, job: &Job) -> Result<InputPart> {
        let have = self.embedder.model_id();
        if job.model != have {
            return Err(WorkerError::ModelMismatch(format!(
                "{}: job wants model {}, this worker has {have}",
                job.path, job.model
            )));
        }
        let path = self.roots.input(&job.path)?;
        let now = fingerprint(&path).map_err(|e| {
            WorkerError::Transient(format!("{}: cannot stat input ({e})", job.path))
        })?;
        if now != job.fp {
            return Err(WorkerError::bad_input(
                &job.path,
                format!(
                    "input changed since the scan (fingerprint {now}, job has {})",
                    job.fp
                ),
            ));
        }
        open_part(&job.path, &path, &job.col, job.idcol.as_deref(), job.rows)
    }

    fn dedup_budget(&self) -> usize {
        let room = self
            .memory
            .headroom()
            .map_or(DEDUP_BYTES, |r| (r / 4).min(DEDUP_BYTES));
        usize::try_from(room).unwrap_or(usize::MAX)
    }
}

/// What embedding one chunk needs from its job.
struct ChunkStep<'j, 'f> {
    embedder: &'j mut dyn Embedder,
    cache: &'j mut DedupCache,
    fleet: &'j mut FleetReuse<'f>,
    checkpoint: &'j mut dyn FnMut() -> Result<()>,
}

/// Write every chunk's rows in order, stopping at the first error (the
/// embedding side then stops sending).
fn write_all(writer: &mut OutputWriter, rows: &Receiver<Rows>) -> Result<()> {
    for (r, ids, embeddings) in rows.iter() {
        writer.write(r, ids, embeddings)?;
    }
    Ok(())
}

impl ChunkStep<'_, '_> {
    fn write(
        &mut self,
        chunk: &Chunk,
        writer: &mut OutputWriter,
        counts: &mut Counts,
    ) -> Result<()> {
        if let Some((rows, ids, embeddings)) = self.embed(chunk, counts)? {
            writer.write(rows, ids, embeddings)?;
        }
        Ok(())
    }

    /// Embed one chunk; its output rows (`None`: no row kept).
    fn embed(&mut self, chunk: &Chunk, counts: &mut Counts) -> Result<Option<Rows>> {
        let cells = chunk.cells();
        let mut cleaned = clean(cells.into_iter());
        if !cleaned.texts.is_empty() {
            let done = embed_rows(
                &cleaned.texts,
                self.embedder,
                self.cache,
                self.fleet,
                self.checkpoint,
            )?;
            let c = &mut cleaned.counts;
            c.rows_truncated = done.rows_truncated;
            c.rows_deduplicated = done.rows_deduplicated;
            c.model_calls = done.model_calls;
            c.rows_reused = done.rows_reused;
            c.rows_exact = done.rows_exact;
            c.rows_int8 = done.rows_int8;
            let rows = cleaned
                .positions
                .iter()
                .map(|&p| (chunk.start + u64::from(p)) as i64)
                .collect();
            let ids = match &chunk.ids {
                Some(ids) => Some(take(ids, &cleaned.positions)?),
                None => None,
            };
            counts.add(&cleaned.counts);
            return Ok(Some((rows, ids, done.embeddings)));
        }
        counts.add(&cleaned.counts);
        Ok(None)
    }
}

fn take(ids: &ArrayRef, positions: &[u32]) -> Result<ArrayRef> {
    let idx = UInt32Array::from(positions.to_vec());
    arrow_select::take::take(ids.as_ref(), &idx, None)
        .map(|a| a as ArrayRef)
        .map_err(|e| WorkerError::Transient(format!("selecting ids: {e}")))
}
