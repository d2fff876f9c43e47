//! Tokenization exactly as sentence-transformers feeds all-MiniLM-L6-v2:
//! `[CLS] .. [SEP]`, truncated to 256 tokens (not the 128 of the model's
//! tokenizer.json), no padding (batches pad to their own longest text).

use std::path::Path;

use embedfleet_core::constants::MAX_SEQ_LENGTH;
use tokenizers::{Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy};

use crate::error::{Result, WorkerError};

/// Texts longer than this are tokenized from a prefix cut at whitespace: far
/// beyond 256 tokens, so the truncated result is the same at a fraction of
/// the cost (checked: a prefix that does not overflow is redone in full).
pub const CUT_CHARS: usize = 20_000;

/// One tokenized text: its ids and whether it was truncated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    pub ids: Vec<u32>,
    pub truncated: bool,
}

/// The model's tokenizer with sentence-transformers' truncation.
pub struct TextTokenizer {
    inner: Tokenizer,
}

/// A prefix of `text` of about `CUT_CHARS` characters, ending at whitespace.
fn prefix(text: &str) -> Option<&str> {
    let (cut, _) = text.char_indices().nth(CUT_CHARS)?;
    let head = &text[..cut];
    head.rfind(char::is_whitespace)
        .map(|i| &head[..i])
        .or(Some(head))
}

impl TextTokenizer {
    pub fn load(path: &Path) -> Result<Self> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| {
            WorkerError::Usage(format!("cannot load tokenizer {}: {e}", path.display()))
        })?;
        inner
            .with_truncation(Some(TruncationParams {
                direction: TruncationDirection::Right,
                max_length: MAX_SEQ_LENGTH,
                strategy: TruncationStrategy::LongestFirst,
                stride: 0,
            }))
            .map_err(|e| WorkerError::Usage(format!("tokenizer truncation: {e}")))?;
        inner.with_padding(None);
        Ok(TextTokenizer { inner })
    }

    fn encode_all(&self, texts: Vec<&str>) -> Result<Vec<Tokens>> {
        let enc = self
            .inner
            .encode_batch(texts, true)
            .map_err(|e| WorkerError::Transient(format!("tokenizer failed: {e}")))?;
        Ok(enc
            .into_iter()
            .map(|e| Tokens {
                truncated: !e.get_overflowing().is_empty(),
                ids: e.get_ids().to_vec(),
            })
            .collect())
    }

    /// Token ids of each text, as sentence-transformers computes them.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        let cuts: Vec<Option<&str>> = texts.iter().map(|t| prefix(t)).collect();
        let inputs = texts
            .iter()
            .zip(&cuts)
            .map(|(t, c)| c.unwrap_or(t))
            .collect();
        let mut out = self.encode_all(inputs)?;
        for (i, cut) in cuts.iter().enumerate() {
            if cut.is_some() && !out[i].truncated {
                // The prefix did not reach 256 tokens: tokenize the whole text.
                out[i] = self.encode_all(vec![texts[i]])?.remove(0);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_cuts_long_texts_at_whitespace_only() {
        assert_eq!(prefix("short"), None);
        let long = "word ".repeat(CUT_CHARS);
        let p = prefix(&long).unwrap();
        assert!(p.len() < CUT_CHARS && p.ends_with("word"));
    }
}
