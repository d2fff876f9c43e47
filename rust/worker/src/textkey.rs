// Twin: bus/textkey.py (docs/parity.md)
//! A text's identity: what makes two rows "the same text" fleet-wide (twin
//! of `bus/textkey.py`, pinned by `tests/vectors/text_keys.json`).
//!
//! The key is BLAKE2b with a 16-byte digest (the digest length is a BLAKE2
//! parameter, as Python's `hashlib.blake2b(digest_size=16)`, not a cut of the
//! 64-byte hash) over `model_id ‖ 0x1F ‖ text`, where `text` is the exact
//! UTF-8 string the model receives after cleaning (`clean.rs`: invalid UTF-8
//! decoded with U+FFFD, nothing else changed). The precision class is not
//! part of the key: the reuse store keeps one entry per (key, class).

use blake2::digest::{Update, VariableOutput};
use blake2::Blake2bVar;

/// Digest size: 128 bits (about 10⁻²³ odds of any collision at 10⁸ texts;
/// the store also checks the text's byte length).
pub const KEY_BYTES: usize = 16;
/// Between the model id and the text, so no (model, text) pair can alias
/// another.
pub const SEPARATOR: u8 = 0x1F;

/// The 16-byte identity of a text.
pub type TextKey = [u8; KEY_BYTES];

/// Keys texts of one model, sharing the hash state of the model id.
#[derive(Clone)]
pub struct TextKeyer {
    base: Blake2bVar,
}

impl TextKeyer {
    pub fn new(model_id: &str) -> Self {
        let mut base = Blake2bVar::new(KEY_BYTES).expect("16 bytes is a BLAKE2b digest size");
        base.update(model_id.as_bytes());
        base.update(&[SEPARATOR]);
        TextKeyer { base }
    }

    /// The key of `text` as embedded by this keyer's model.
    pub fn key(&self, text: &str) -> TextKey {
        let mut h = self.base.clone();
        h.update(text.as_bytes());
        let mut out = [0u8; KEY_BYTES];
        h.finalize_variable(&mut out)
            .expect("the buffer has the digest's size");
        out
    }
}

/// The 16-byte identity of `text` as embedded by `model_id`.
pub fn text_key(model_id: &str, text: &str) -> TextKey {
    TextKeyer::new(model_id).key(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_model_and_every_byte_of_the_text_count() {
        let k = TextKeyer::new("m");
        assert_eq!(k.key("lol"), text_key("m", "lol"));
        assert_ne!(k.key("lol"), k.key("lol "));
        assert_ne!(text_key("m", "lol"), text_key("n", "lol"));
        // The separator: model "ma" with text "b" is not model "m" with "ab".
        assert_ne!(text_key("ma", "b"), text_key("m", "ab"));
    }
}
