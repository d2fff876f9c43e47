// Twin: workers/embedder.py (docs/parity.md)
//! Stand-ins for the model, for tests and benchmarks of the bus, the data
//! path and process control, where loading ONNX Runtime would only cost time:
//!
//! - `HashEmbedder` (`--embedder hash`), as the Python worker has:
//!   pseudo-embeddings from a hash of each text, at a simulated cost per row
//!   slept on the caller's thread;
//! - `SimulatedEmbedder` (`--embedder simulated`): everything the real
//!   embedder does except the model (the real tokenizer, length-sorted
//!   batches under the device's token budget, padded `i64` inputs), then a
//!   `SimulatedDevice` thread that "computes" each batch by sleeping its cost
//!   off the CPU and returns the hash vectors. While the device computes
//!   batch n, the caller pads batch n+1 (twin of `workers/sim_embedder.py`).

use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use embedfleet_core::constants::{EMBEDDING_DIM, MAX_SEQ_LENGTH};

use crate::batching::{plan_batches, Embedder, Encoded, Pending, CUDA_TOKEN_BUDGET, MAX_BATCH};
use crate::error::{Result, WorkerError};
use crate::tokenize::TextTokenizer;

pub struct HashEmbedder {
    model_id: String,
    seconds_per_row: f64,
    /// Sizes of the `encode` calls so far (tests check deduplication with it).
    pub calls: Vec<usize>,
}

impl HashEmbedder {
    pub fn new(model_id: String, seconds_per_row: f64) -> Self {
        HashEmbedder {
            model_id,
            seconds_per_row,
            calls: Vec::new(),
        }
    }
}

/// FNV-1a of the text.
fn seed(text: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
    h
}

/// FNV-1a of the text, then a unit vector drawn from it.
fn vector(text: &str) -> impl Iterator<Item = f32> {
    seeded(seed(text))
}

/// The unit vector drawn from a seed.
fn seeded(h: u64) -> impl Iterator<Item = f32> {
    let raw: Vec<f32> = (0..EMBEDDING_DIM)
        .map(|i| {
            let x = (h ^ (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
                .wrapping_mul(0xff51_afd7_ed55_8ccd);
            ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
        })
        .collect();
    let norm = raw.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    raw.into_iter().map(move |x| x / norm)
}

impl Embedder for HashEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn device(&self) -> &str {
        "cpu"
    }

    fn precision(&self) -> &str {
        "fp32"
    }

    fn encode(&mut self, texts: &[&str]) -> Result<Encoded> {
        self.calls.push(texts.len());
        if self.seconds_per_row > 0.0 {
            std::thread::sleep(Duration::from_secs_f64(
                self.seconds_per_row * texts.len() as f64,
            ));
        }
        Ok(Encoded {
            embeddings: texts.iter().flat_map(|t| vector(t)).collect(),
            truncated: texts
                .iter()
                .map(|t| t.split_whitespace().count() > MAX_SEQ_LENGTH - 2)
                .collect(),
        })
    }
}

/// One padded batch on its way to the simulated device.
struct Batch {
    input_ids: Vec<i64>,
    mask: Vec<i64>,
    rows: usize,
    seeds: Vec<u64>,
    reply: mpsc::Sender<Vec<f32>>,
}

/// A device with its own clock: each batch costs `us_per_token` per padded
/// token, or `1 / rows_per_second` per row when that is set; zero costs
/// nothing (the data path's ceiling). Batches run one at a time, in order, on
/// the device's thread.
pub struct SimulatedDevice {
    tx: Option<mpsc::Sender<Batch>>,
    thread: Option<JoinHandle<()>>,
}

impl SimulatedDevice {
    pub fn new(us_per_token: f64, rows_per_second: f64) -> Self {
        let (tx, rx) = mpsc::channel::<Batch>();
        let cost = move |rows: usize, tokens: usize| {
            if rows_per_second > 0.0 {
                rows as f64 / rows_per_second
            } else {
                tokens as f64 * us_per_token.max(0.0) * 1e-6
            }
        };
        let thread = std::thread::Builder::new()
            .name("sim-device".into())
            .spawn(move || {
                for b in rx {
                    let seconds = cost(b.rows, b.input_ids.len());
                    if seconds > 0.0 {
                        std::thread::sleep(Duration::from_secs_f64(seconds));
                    }
                    debug_assert_eq!(b.mask.len(), b.input_ids.len());
                    let out: Vec<f32> = b.seeds.iter().flat_map(|&h| seeded(h)).collect();
                    let _ = b.reply.send(out);
                }
            })
            .expect("spawning the simulated device's thread");
        SimulatedDevice {
            tx: Some(tx),
            thread: Some(thread),
        }
    }

    fn submit(&self, batch: Batch) -> Result<()> {
        self.tx
            .as_ref()
            .and_then(|tx| tx.send(batch).ok())
            .ok_or_else(|| WorkerError::Transient("the simulated device stopped".into()))
    }
}

impl Drop for SimulatedDevice {
    fn drop(&mut self) {
        drop(self.tx.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// `Embedder` over the real tokenizer and a `SimulatedDevice`.
pub struct SimulatedEmbedder {
    model_id: String,
    tokenizer: TextTokenizer,
    device: SimulatedDevice,
    token_budget: usize,
}

impl SimulatedEmbedder {
    pub fn new(
        model_id: String,
        tokenizer: TextTokenizer,
        us_per_token: f64,
        rows_per_second: f64,
        token_budget: Option<usize>,
    ) -> Self {
        SimulatedEmbedder {
            model_id,
            tokenizer,
            device: SimulatedDevice::new(us_per_token, rows_per_second),
            token_budget: token_budget.unwrap_or(8 * CUDA_TOKEN_BUDGET),
        }
    }
}

impl Embedder for SimulatedEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn device(&self) -> &str {
        "sim"
    }

    fn precision(&self) -> &str {
        "fp32"
    }

    fn encode(&mut self, texts: &[&str]) -> Result<Encoded> {
        self.submit(texts).wait()
    }

    /// Tokenize, pad and queue the batches on the device thread; the caller
    /// waits for the vectors only when it needs them.
    fn submit(&mut self, texts: &[&str]) -> Pending {
        match self.queue(texts) {
            Ok(p) => p,
            Err(e) => Pending::Ready(Err(e)),
        }
    }
}

impl SimulatedEmbedder {
    fn queue(&mut self, texts: &[&str]) -> Result<Pending> {
        let tokens = self.tokenizer.encode(texts)?;
        let lengths: Vec<usize> = tokens.iter().map(|t| t.ids.len()).collect();
        let budget = self.token_budget;
        let mut running = Vec::new();
        for batch in plan_batches(&lengths, MAX_BATCH, |_| budget) {
            let len = batch.iter().map(|&i| lengths[i]).max().unwrap_or(0).max(1);
            let (mut input_ids, mut mask) =
                (vec![0i64; batch.len() * len], vec![0i64; batch.len() * len]);
            for (r, &i) in batch.iter().enumerate() {
                for (c, &t) in tokens[i].ids.iter().enumerate() {
                    input_ids[r * len + c] = i64::from(t);
                    mask[r * len + c] = 1;
                }
            }
            let (reply, rx) = mpsc::channel();
            let seeds = batch.iter().map(|&i| seed(texts[i])).collect();
            self.device.submit(Batch {
                input_ids,
                mask,
                rows: batch.len(),
                seeds,
                reply,
            })?;
            running.push((batch, rx));
        }
        let n = texts.len();
        let truncated: Vec<bool> = tokens.iter().map(|t| t.truncated).collect();
        Ok(Pending::Waiting(Box::new(move || {
            let mut out = vec![0f32; n * EMBEDDING_DIM];
            for (batch, rx) in running {
                let vectors = rx
                    .recv()
                    .map_err(|_| WorkerError::Transient("the simulated device stopped".into()))?;
                for (k, &i) in batch.iter().enumerate() {
                    out[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM]
                        .copy_from_slice(&vectors[k * EMBEDDING_DIM..(k + 1) * EMBEDDING_DIM]);
                }
            }
            Ok(Encoded {
                embeddings: out,
                truncated,
            })
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_vectors() {
        let mut e = HashEmbedder::new("m".into(), 0.0);
        let a = e.encode(&["x", "y", "x"]).unwrap();
        let v = &a.embeddings;
        assert_eq!(v[..EMBEDDING_DIM], v[2 * EMBEDDING_DIM..]);
        assert_ne!(v[..EMBEDDING_DIM], v[EMBEDDING_DIM..2 * EMBEDDING_DIM]);
        let n: f32 = v[..EMBEDDING_DIM].iter().map(|x| x * x).sum();
        assert!((n - 1.0).abs() < 1e-5);
    }
}
