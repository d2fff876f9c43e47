//! A deterministic stand-in for the model (`--embedder hash`), as the Python
//! worker has: pseudo-embeddings from a hash of each text, at a simulated
//! cost per row. Not a model: for tests and benchmarks of the bus, the data
//! path and process control, where loading ONNX Runtime would only cost time.

use std::time::Duration;

use embedfleet_core::constants::{EMBEDDING_DIM, MAX_SEQ_LENGTH};

use crate::batching::{Embedder, Encoded};
use crate::error::Result;

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

/// FNV-1a of the text, then a unit vector drawn from it.
fn vector(text: &str) -> impl Iterator<Item = f32> {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    }
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
