// Twin: workers/dedup.py, workers/st_embedder.py (docs/parity.md)
//! From texts to embeddings: exact deduplication within a job, then the
//! fleet's reuse store (`reuse`), then length-sorted batches under a token
//! budget (padding waste dominates CPU cost otherwise), run through the model.

use std::borrow::Cow;
use std::collections::HashMap;

use embedfleet_core::constants::{EMBEDDING_DIM, MAX_SEQ_LENGTH};

use crate::error::Result;
use crate::limits::MemoryBudget;
use crate::model::OnnxModel;
use crate::reuse::{Class, FleetReuse};
use crate::tokenize::TextTokenizer;

/// Tokens per batch on a CPU by default. Measured end to end on the Rust
/// worker benchmark's texts (2 threads, AMD EPYC with AVX-512): 1,024-2,048
/// tokens ran fp32 about 15% and int8 about 20% faster than 8,192, whose
/// activations (8,192 x 1,536 floats in the feed-forward layer, 50 MB) fall
/// out of the caches, and which pad more.
pub const CPU_TOKEN_BUDGET: usize = 2048;
/// Tokens per batch on CUDA by default: a GPU wants large batches.
pub const CUDA_TOKEN_BUDGET: usize = 8192;
/// The smallest budget: one text of the longest length.
pub const MIN_TOKEN_BUDGET: usize = MAX_SEQ_LENGTH;
/// Most texts in one batch, whatever their length.
pub const MAX_BATCH: usize = 1024;

/// Embeddings of `n` texts (row-major `n x 384`) and which were truncated.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded {
    pub embeddings: Vec<f32>,
    pub truncated: Vec<bool>,
}

/// A loaded model that turns distinct texts into normalised embeddings.
pub trait Embedder: Send {
    fn model_id(&self) -> &str;
    fn device(&self) -> &str;
    fn precision(&self) -> &str;
    fn encode(&mut self, texts: &[&str]) -> Result<Encoded>;

    /// Queue `texts` on the device and return at once, so the caller can
    /// prepare the next round while the device computes this one (how a GPU
    /// is fed). By default the texts are computed here and now.
    fn submit(&mut self, texts: &[&str]) -> Pending {
        Pending::Ready(self.encode(texts))
    }
}

/// Texts queued on a device (`Embedder::submit`): `wait` gives their vectors.
pub enum Pending {
    /// Already computed (or failed).
    Ready(Result<Encoded>),
    /// Computing: the closure blocks until the device answers.
    Waiting(Box<dyn FnOnce() -> Result<Encoded> + Send>),
}

impl Pending {
    pub fn wait(self) -> Result<Encoded> {
        match self {
            Pending::Ready(r) => r,
            Pending::Waiting(f) => f(),
        }
    }
}

/// Peak activation bytes per token of one MiniLM layer at a padded length
/// (hidden copies, the intermediate projection, the attention scores).
pub fn bytes_per_token(seq_len: usize) -> u64 {
    4 * (8 * 384 + 2 * 1536 + 3 * 12 * seq_len as u64)
}

/// Share of a batch's tokens that may be padding (as the Python worker).
pub const MAX_PADDING: f64 = 0.2;
/// Padding tokens always allowed: below this one more forward pass costs more
/// than the padding does.
pub const PADDING_SLACK: usize = 256;

/// Cut the texts (longest first) into batches: each holds as many texts as fit
/// `budget(seq_len)` tokens at the length of its longest text, and ends before
/// a text so much shorter that padding would pass `MAX_PADDING` of the batch
/// (and `PADDING_SLACK` tokens). Without that rule a small job with a few long
/// texts ran as one batch padded to 256 tokens: several times the compute.
pub fn plan_batches(
    lengths: &[usize],
    max_batch: usize,
    budget: impl Fn(usize) -> usize,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut batches = Vec::new();
    let mut pos = 0;
    while pos < order.len() {
        let seq_len = lengths[order[pos]].max(1);
        let limit = (budget(seq_len) / seq_len)
            .clamp(1, max_batch)
            .min(order.len() - pos);
        let (mut count, mut real) = (1, seq_len);
        while count < limit {
            let next = lengths[order[pos + count]];
            let padding = seq_len * (count + 1) - (real + next);
            let allowed = (MAX_PADDING * (seq_len * (count + 1)) as f64) as usize;
            if padding > allowed.max(PADDING_SLACK) {
                break;
            }
            count += 1;
            real += next;
        }
        batches.push(order[pos..pos + count].to_vec());
        pos += count;
    }
    batches
}

/// The real embedder: tokenizer plus ONNX Runtime session.
pub struct OnnxEmbedder {
    tokenizer: TextTokenizer,
    model: OnnxModel,
    model_id: String,
    token_budget: usize,
    memory: MemoryBudget,
}

impl OnnxEmbedder {
    pub fn new(
        tokenizer: TextTokenizer,
        model: OnnxModel,
        model_id: String,
        token_budget: usize,
        memory: MemoryBudget,
    ) -> Self {
        OnnxEmbedder {
            tokenizer,
            model,
            model_id,
            token_budget: token_budget.max(MIN_TOKEN_BUDGET),
            memory,
        }
    }
}

impl Embedder for OnnxEmbedder {
    fn model_id(&self) -> &str {
        &self.model_id
    }

    fn device(&self) -> &str {
        self.model.device.name()
    }

    fn precision(&self) -> &str {
        self.model.precision.name()
    }

    fn encode(&mut self, texts: &[&str]) -> Result<Encoded> {
        let tokens = self.tokenizer.encode(texts)?;
        let lengths: Vec<usize> = tokens.iter().map(|t| t.ids.len()).collect();
        let (wanted, memory) = (self.token_budget, self.memory);
        let budget =
            |seq_len: usize| memory.fit(wanted, bytes_per_token(seq_len), MIN_TOKEN_BUDGET, 0.25);
        let mut out = vec![0f32; texts.len() * EMBEDDING_DIM];
        for batch in plan_batches(&lengths, MAX_BATCH, budget) {
            let ids: Vec<&[u32]> = batch.iter().map(|&i| tokens[i].ids.as_slice()).collect();
            let vectors = self.model.embed(&ids)?;
            for (k, &i) in batch.iter().enumerate() {
                out[i * EMBEDDING_DIM..(i + 1) * EMBEDDING_DIM]
                    .copy_from_slice(&vectors[k * EMBEDDING_DIM..(k + 1) * EMBEDDING_DIM]);
            }
        }
        Ok(Encoded {
            embeddings: out,
            truncated: tokens.iter().map(|t| t.truncated).collect(),
        })
    }
}

/// Bytes a cached entry costs besides its text.
const ENTRY_OVERHEAD: usize = EMBEDDING_DIM * 4 + 64;

/// A text's vector as the job holds it, and where it came from.
struct Cached {
    vector: Box<[f32]>,
    truncated: bool,
    /// It came from the reuse store (its repeats count as reused rows).
    reused: bool,
    class: Class,
}

/// Text -> (embedding, truncated, origin, class) for the texts already
/// embedded or fetched in a job, up to a byte budget; past it, texts are
/// still deduplicated within a chunk.
pub struct DedupCache {
    max_bytes: usize,
    used: usize,
    entries: HashMap<String, Cached>,
}

impl DedupCache {
    pub fn new(max_bytes: usize) -> Self {
        DedupCache {
            max_bytes,
            used: 0,
            entries: HashMap::new(),
        }
    }

    fn put(&mut self, text: &str, entry: Cached) {
        let cost = text.len() + ENTRY_OVERHEAD;
        if self.used + cost <= self.max_bytes {
            self.entries.insert(text.to_string(), entry);
            self.used += cost;
        }
    }
}

/// Embeddings of every row of a chunk, in row order, and the counts.
/// Rows add up: `rows = model_calls + rows_deduplicated + rows_reused`, and
/// `rows = rows_exact + rows_int8`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Deduplicated {
    pub embeddings: Vec<f32>,
    pub rows_truncated: u64,
    /// Rows that repeat a text this job computed itself.
    pub rows_deduplicated: u64,
    /// Texts sent to the model.
    pub model_calls: u64,
    /// Rows whose vector came from the reuse store.
    pub rows_reused: u64,
    pub rows_exact: u64,
    pub rows_int8: u64,
}

/// Embed the rows of one chunk: each distinct text once, from the job's
/// cache, the reuse store (`fleet`) or the model. `checkpoint` runs while
/// the chunk waits for texts other workers are computing.
pub fn embed_rows(
    texts: &[Cow<'_, str>],
    embedder: &mut dyn Embedder,
    cache: &mut DedupCache,
    fleet: &mut FleetReuse,
    checkpoint: &mut dyn FnMut() -> Result<()>,
) -> Result<Deduplicated> {
    let mut slot: HashMap<&str, usize> = HashMap::new();
    let mut distinct: Vec<&str> = Vec::new();
    let inverse: Vec<usize> = texts
        .iter()
        .map(|t| {
            *slot.entry(t.as_ref()).or_insert_with(|| {
                distinct.push(t.as_ref());
                distinct.len() - 1
            })
        })
        .collect();
    let mut vectors = vec![0f32; distinct.len() * EMBEDDING_DIM];
    let mut truncated = vec![false; distinct.len()];
    let mut reused = vec![false; distinct.len()];
    let mut class = vec![fleet.own_class(); distinct.len()];
    let mut todo = Vec::new();
    for (j, text) in distinct.iter().enumerate() {
        match cache.entries.get(*text) {
            Some(c) => {
                vectors[j * EMBEDDING_DIM..(j + 1) * EMBEDDING_DIM].copy_from_slice(&c.vector);
                (truncated[j], reused[j], class[j]) = (c.truncated, c.reused, c.class);
            }
            None => todo.push(j),
        }
    }
    let mut model_calls = 0;
    if !todo.is_empty() {
        let batch: Vec<&str> = todo.iter().map(|&j| distinct[j]).collect();
        let got = fleet.resolve(&batch, embedder, checkpoint)?;
        model_calls = got.model_calls;
        for (k, &j) in todo.iter().enumerate() {
            let v = &got.embeddings[k * EMBEDDING_DIM..(k + 1) * EMBEDDING_DIM];
            vectors[j * EMBEDDING_DIM..(j + 1) * EMBEDDING_DIM].copy_from_slice(v);
            (truncated[j], reused[j], class[j]) = (got.truncated[k], got.reused[k], got.class[k]);
            let entry = Cached {
                vector: v.into(),
                truncated: truncated[j],
                reused: reused[j],
                class: class[j],
            };
            cache.put(distinct[j], entry);
        }
    }
    let mut embeddings = Vec::with_capacity(texts.len() * EMBEDDING_DIM);
    for &j in &inverse {
        embeddings.extend_from_slice(&vectors[j * EMBEDDING_DIM..(j + 1) * EMBEDDING_DIM]);
    }
    let rows = |f: &dyn Fn(usize) -> bool| inverse.iter().filter(|&&j| f(j)).count() as u64;
    let rows_reused = rows(&|j| reused[j]);
    let rows_int8 = rows(&|j| class[j] == Class::Int8);
    Ok(Deduplicated {
        embeddings,
        rows_truncated: rows(&|j| truncated[j]),
        rows_deduplicated: texts.len() as u64 - model_calls - rows_reused,
        model_calls,
        rows_reused,
        rows_exact: texts.len() as u64 - rows_int8,
        rows_int8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reuse::MemoryReuseStore;
    use crate::stand_in::HashEmbedder;

    struct Counting(Vec<usize>);

    impl Embedder for Counting {
        fn model_id(&self) -> &str {
            "m"
        }
        fn device(&self) -> &str {
            "cpu"
        }
        fn precision(&self) -> &str {
            "fp32"
        }
        fn encode(&mut self, texts: &[&str]) -> Result<Encoded> {
            self.0.push(texts.len());
            let embeddings = texts
                .iter()
                .flat_map(|t| std::iter::repeat_n(t.len() as f32, EMBEDDING_DIM))
                .collect();
            Ok(Encoded {
                embeddings,
                truncated: texts.iter().map(|t| t.len() > 5).collect(),
            })
        }
    }

    #[test]
    fn batches_are_length_sorted_and_under_budget() {
        let lengths = [3, 200, 10, 200, 50, 7];
        let batches = plan_batches(&lengths, 1024, |_| 400);
        assert_eq!(batches[0], vec![1, 3]);
        assert!(batches
            .iter()
            .all(|b| b.len() * lengths[b[0]] <= 400 || b.len() == 1));
        let mut all: Vec<usize> = batches.concat();
        all.sort();
        assert_eq!(all, (0..6).collect::<Vec<_>>());
        assert!(
            plan_batches(&[300], 1024, |_| 10).len() == 1,
            "an over-budget text still gets a batch"
        );
    }

    #[test]
    fn a_batch_ends_before_padding_passes_a_fifth_of_it() {
        // 10 texts of 256 tokens and 100 of 10: one budget would take them
        // all at 256 (28,160 tokens, 91% padding); the rule splits them.
        let mut lengths = vec![256; 10];
        lengths.extend(std::iter::repeat_n(10, 100));
        let batches = plan_batches(&lengths, 1024, |_| 1 << 20);
        for b in &batches {
            let seq = lengths[b[0]];
            let real: usize = b.iter().map(|&i| lengths[i]).sum();
            let padding = seq * b.len() - real;
            assert!(
                padding <= PADDING_SLACK.max((MAX_PADDING * (seq * b.len()) as f64) as usize),
                "batch of {} at {seq} pads {padding} tokens",
                b.len()
            );
        }
        assert_eq!(batches.len(), 2, "the long texts, then the short ones");
    }

    #[test]
    fn identical_texts_are_embedded_once_across_chunks() {
        let mut e = Counting(vec![]);
        let mut cache = DedupCache::new(1 << 20);
        let chunk1: Vec<Cow<str>> = ["a", "long text", "a"]
            .into_iter()
            .map(Cow::Borrowed)
            .collect();
        let mut fleet = FleetReuse::new(None, "m", "fp32", "w");
        let mut go = || Ok(());
        let d1 = embed_rows(&chunk1, &mut e, &mut cache, &mut fleet, &mut go).unwrap();
        assert_eq!((d1.rows_deduplicated, d1.rows_truncated), (1, 1));
        assert_eq!((d1.model_calls, d1.rows_reused, d1.rows_exact), (2, 0, 3));
        assert_eq!(d1.embeddings.len(), 3 * EMBEDDING_DIM);
        assert_eq!(d1.embeddings[2 * EMBEDDING_DIM], 1.0);
        let chunk2: Vec<Cow<str>> = ["long text", "b"].into_iter().map(Cow::Borrowed).collect();
        let d2 = embed_rows(&chunk2, &mut e, &mut cache, &mut fleet, &mut go).unwrap();
        assert_eq!((d2.rows_deduplicated, d2.rows_truncated), (1, 1));
        assert_eq!(e.0, vec![2, 1]);
    }

    #[test]
    fn repeats_of_a_reused_text_count_as_reused_in_later_chunks_too() {
        let mut store = MemoryReuseStore::default();
        let cell = |v: &[&'static str]| -> Vec<Cow<'static, str>> {
            v.iter().map(|t| Cow::Borrowed(*t)).collect()
        };
        let mut go = || Ok(());
        let mut first = FleetReuse::new(Some(&mut store), "m", "fp32", "w1");
        let mut e = HashEmbedder::new("m".into(), 0.0);
        let mut cache = DedupCache::new(1 << 20);
        embed_rows(&cell(&["old"]), &mut e, &mut cache, &mut first, &mut go).unwrap();
        drop(first);
        let mut cache = DedupCache::new(1 << 20);
        let mut fleet = FleetReuse::new(Some(&mut store), "m", "int8", "w2");
        let d1 = embed_rows(
            &cell(&["old", "new", "old", "new"]),
            &mut e,
            &mut cache,
            &mut fleet,
            &mut go,
        )
        .unwrap();
        let got = (
            d1.model_calls,
            d1.rows_deduplicated,
            d1.rows_reused,
            d1.rows_exact,
            d1.rows_int8,
        );
        assert_eq!(got, (1, 1, 2, 2, 2));
        let d2 = embed_rows(
            &cell(&["old", "new"]),
            &mut e,
            &mut cache,
            &mut fleet,
            &mut go,
        )
        .unwrap();
        let got = (
            d2.model_calls,
            d2.rows_deduplicated,
            d2.rows_reused,
            d2.rows_exact,
            d2.rows_int8,
        );
        assert_eq!(got, (0, 1, 1, 1, 1));
        assert_eq!(e.calls, vec![1, 1]);
    }
}
