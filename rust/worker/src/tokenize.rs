// Twin: workers/st_embedder.py (docs/parity.md)
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
    fast: Option<FastWordPiece>,
}

/// BERT tokenization of short printable-ASCII texts whose words are all
/// whole vocabulary entries, without the library's normalizer and
/// pre-tokenizer (which cost ~20 µs a short text): lowercase, split at
/// spaces and at every ASCII punctuation character (BERT counts all
/// non-alphanumeric printable ASCII as punctuation), and one vocabulary
/// look-up per word, which is what WordPiece's greedy longest match does with
/// a word that is itself in the vocabulary. Any other text (non-ASCII, a
/// control character, a word needing `##` pieces, an added token such as
/// `[MASK]`, more than `MAX_SEQ_LENGTH` tokens) goes to the library. Twin of
/// `workers.st_embedder.FastWordPiece`; the integration tests check equality
/// with the library.
pub struct FastWordPiece {
    vocab: std::collections::HashMap<String, u32>,
    cls: u32,
    sep: u32,
    /// Added tokens, lowercased: the library matches them in the raw text.
    added: Vec<String>,
}

impl FastWordPiece {
    /// Longest text (bytes) the fast path takes.
    pub const MAX_BYTES: usize = 1000;

    /// The fast path for a tokenizer of the BERT kind (uncased WordPiece,
    /// `[CLS] $A [SEP]`), else `None`.
    pub fn of(tokenizer: &Tokenizer) -> Option<Self> {
        let state: serde_json::Value =
            serde_json::from_str(&tokenizer.to_string(false).ok()?).ok()?;
        let norm = &state["normalizer"];
        let model = &state["model"];
        let bert = norm["type"] == "BertNormalizer"
            && norm["lowercase"] == true
            && state["pre_tokenizer"]["type"] == "BertPreTokenizer"
            && model["type"] == "WordPiece"
            && model["continuing_subword_prefix"] == "##"
            && model["max_input_chars_per_word"].as_u64().unwrap_or(0) >= 100;
        let post = &state["post_processor"];
        let single: Vec<String> = post["single"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| match p["SpecialToken"]["id"].as_str() {
                        Some(id) => id.to_string(),
                        None if p.get("Sequence").is_some() => "$A".to_string(),
                        None => String::new(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        let template = post["type"] == "TemplateProcessing" && single == ["[CLS]", "$A", "[SEP]"];
        if !bert || !template {
            return None;
        }
        let vocab = tokenizer
            .get_vocab(false)
            .into_iter()
            .filter(|(k, _)| !k.starts_with("##"))
            .collect();
        let added = state["added_tokens"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["content"].as_str())
                    .filter(|c| !c.is_empty())
                    .map(str::to_ascii_lowercase)
                    .collect()
            })
            .unwrap_or_default();
        Some(FastWordPiece {
            vocab,
            cls: tokenizer.token_to_id("[CLS]")?,
            sep: tokenizer.token_to_id("[SEP]")?,
            added,
        })
    }

    /// `[CLS] .. [SEP]` ids of `text`, or `None` where the library must do it.
    pub fn ids(&self, text: &str) -> Option<Vec<u32>> {
        let bytes = text.as_bytes();
        if bytes.len() > Self::MAX_BYTES || !bytes.iter().all(|b| (0x20..0x7f).contains(b)) {
            return None;
        }
        let lower = text.to_ascii_lowercase();
        if lower.contains('[') && self.added.iter().any(|a| lower.contains(a.as_str())) {
            return None;
        }
        let b = lower.as_bytes();
        let mut out = Vec::with_capacity(b.len() / 4 + 2);
        out.push(self.cls);
        let mut i = 0;
        while i < b.len() {
            if b[i] == b' ' {
                i += 1;
                continue;
            }
            let mut end = i + 1;
            if b[i].is_ascii_alphanumeric() {
                while end < b.len() && b[end].is_ascii_alphanumeric() {
                    end += 1;
                }
            }
            out.push(*self.vocab.get(&lower[i..end])?);
            i = end;
        }
        out.push(self.sep);
        (out.len() <= MAX_SEQ_LENGTH).then_some(out)
    }
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
        let fast = FastWordPiece::of(&inner);
        Ok(TextTokenizer { inner, fast })
    }

    /// The library alone, without the fast path (tests compare the two).
    pub fn without_fast_path(mut self) -> Self {
        self.fast = None;
        self
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

    /// Token ids of each text, as sentence-transformers computes them: the
    /// fast path where it applies, the library (on all cores) for the rest.
    pub fn encode(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
        let mut out: Vec<Option<Tokens>> = match &self.fast {
            Some(fast) => texts
                .iter()
                .map(|t| {
                    fast.ids(t).map(|ids| Tokens {
                        ids,
                        truncated: false,
                    })
                })
                .collect(),
            None => vec![None; texts.len()],
        };
        let slow: Vec<usize> = (0..texts.len()).filter(|&i| out[i].is_none()).collect();
        if !slow.is_empty() {
            let rest: Vec<&str> = slow.iter().map(|&i| texts[i]).collect();
            for (i, t) in slow.into_iter().zip(self.encode_library(&rest)?) {
                out[i] = Some(t);
            }
        }
        Ok(out
            .into_iter()
            .map(|t| t.expect("every text encoded"))
            .collect())
    }

    fn encode_library(&self, texts: &[&str]) -> Result<Vec<Tokens>> {
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
