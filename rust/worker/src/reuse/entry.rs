// Twin: bus/reuse.py (docs/parity.md)
//! Entries of the reuse store and precision classes (twin of `bus/reuse.py`,
//! pinned by `tests/vectors/reuse_entries.json`).
//!
//! An entry is the vector of one distinct text in one precision class. Its
//! value, all little-endian, 776 bytes: format (1), class (0 exact, 1 int8),
//! flags (bit 0: truncated at 256 tokens), 0, the text's UTF-8 byte length
//! (u32, saturating), then the 384 components as IEEE 754 binary16 rounded
//! to nearest even. binary16 keeps cosine ≥ 0.99999 to the float32 vector;
//! readers widen and renormalise.

use embedfleet_core::constants::{
    EMBEDDING_DIM, REUSE_CLASS_EXACT, REUSE_CLASS_INT8, REUSE_ENTRY_FORMAT,
};
use half::f16;

/// Bytes before the components.
pub const HEADER_BYTES: usize = 8;
/// Bytes of a whole entry.
pub const ENTRY_BYTES: usize = HEADER_BYTES + 2 * EMBEDDING_DIM;
/// A decoded vector's norm must be within this of 1 (before renormalising).
pub const NORM_TOLERANCE: f64 = 0.01;

/// Precision class of a vector: a worker reuses vectors at least as exact as
/// its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Class {
    /// fp32, bf16 and fp16, each within cosine 0.9999 of fp32.
    Exact,
    /// int8, reusable by int8 workers only.
    Int8,
}

impl Class {
    /// The class of a worker's precision: int8 is its own, the rest are exact.
    pub fn of_precision(precision: &str) -> Class {
        if precision == "int8" {
            Class::Int8
        } else {
            Class::Exact
        }
    }

    /// Its letter in the store's keys.
    pub fn name(self) -> &'static str {
        match self {
            Class::Exact => REUSE_CLASS_EXACT,
            Class::Int8 => REUSE_CLASS_INT8,
        }
    }

    fn code(self) -> u8 {
        match self {
            Class::Exact => 0,
            Class::Int8 => 1,
        }
    }

    fn from_code(code: u8) -> Option<Class> {
        match code {
            0 => Some(Class::Exact),
            1 => Some(Class::Int8),
            _ => None,
        }
    }

    /// Classes a worker of this class may reuse, most exact first (its own last).
    pub fn acceptable(self) -> &'static [Class] {
        match self {
            Class::Exact => &[Class::Exact],
            Class::Int8 => &[Class::Exact, Class::Int8],
        }
    }
}

fn stored_length(text_bytes: usize) -> u32 {
    u32::try_from(text_bytes).unwrap_or(u32::MAX)
}

/// The stored value of one vector (`vector` has `EMBEDDING_DIM` components).
pub fn encode_entry(class: Class, vector: &[f32], truncated: bool, text_bytes: usize) -> Vec<u8> {
    debug_assert_eq!(vector.len(), EMBEDDING_DIM);
    let mut out = Vec::with_capacity(ENTRY_BYTES);
    out.extend_from_slice(&[REUSE_ENTRY_FORMAT, class.code(), u8::from(truncated), 0]);
    out.extend_from_slice(&stored_length(text_bytes).to_le_bytes());
    for &x in vector {
        out.extend_from_slice(&f16::from_f32(x).to_le_bytes());
    }
    out
}

/// A decoded entry: unit vector, truncation flag and class.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub vector: Vec<f32>,
    pub truncated: bool,
    pub class: Class,
}

/// The entry, or `None` when `value` is not a valid vector of one of
/// `classes` for a text of `text_bytes` UTF-8 bytes (corrupt, cut short,
/// another format, or a hash collision with a text of another length).
pub fn decode_entry(value: &[u8], classes: &[Class], text_bytes: usize) -> Option<Entry> {
    if value.len() != ENTRY_BYTES || value[0] != REUSE_ENTRY_FORMAT {
        return None;
    }
    let class = Class::from_code(value[1]).filter(|c| classes.contains(c))?;
    let length = u32::from_le_bytes(value[4..8].try_into().expect("four bytes"));
    if length != stored_length(text_bytes) {
        return None;
    }
    let vector: Vec<f32> = value[HEADER_BYTES..]
        .chunks_exact(2)
        .map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32())
        .collect();
    let norm = vector
        .iter()
        .map(|&x| f64::from(x) * f64::from(x))
        .sum::<f64>()
        .sqrt();
    if !norm.is_finite() || (norm - 1.0).abs() > NORM_TOLERANCE {
        return None;
    }
    let norm = norm as f32;
    Some(Entry {
        vector: vector.into_iter().map(|x| x / norm).collect(),
        truncated: value[2] & 1 == 1,
        class,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit() -> Vec<f32> {
        let v: Vec<f32> = (0..EMBEDDING_DIM)
            .map(|i| (i as f32 * 0.37).sin())
            .collect();
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.into_iter().map(|x| x / n).collect()
    }

    #[test]
    fn an_entry_round_trips_within_half_precision() {
        let v = unit();
        let value = encode_entry(Class::Int8, &v, true, 70_000);
        assert_eq!(value.len(), ENTRY_BYTES);
        let e = decode_entry(&value, Class::Int8.acceptable(), 70_000).unwrap();
        assert_eq!((e.class, e.truncated), (Class::Int8, true));
        let cos: f32 = v.iter().zip(&e.vector).map(|(a, b)| a * b).sum();
        assert!(cos > 0.99999, "cosine {cos}");
        assert!(decode_entry(&value, Class::Exact.acceptable(), 70_000).is_none());
    }

    #[test]
    fn text_lengths_saturate_at_u32() {
        let value = encode_entry(Class::Exact, &unit(), false, usize::MAX);
        assert_eq!(value[4..8], [0xff; 4]);
        assert!(decode_entry(&value, &[Class::Exact], usize::MAX).is_some());
    }

    #[test]
    fn classes_of_precisions() {
        assert_eq!(Class::of_precision("int8"), Class::Int8);
        assert_eq!(Class::of_precision("fp32"), Class::Exact);
        assert_eq!(Class::of_precision("fp16"), Class::Exact);
        assert_eq!(Class::Int8.acceptable(), &[Class::Exact, Class::Int8]);
        assert_eq!(Class::Exact.acceptable(), &[Class::Exact]);
    }
}
