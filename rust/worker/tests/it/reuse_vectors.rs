//! The reuse vectors both suites load (`tests/vectors/text_keys.json`,
//! `tests/vectors/reuse_entries.json`): a text's key after the worker's own
//! cleaning, and the store's entry codec.

use super::common;

use embedfleet_worker::clean::{clean, Cell};
use embedfleet_worker::reuse::{decode_entry, encode_entry, Class, ENTRY_BYTES};
use embedfleet_worker::textkey::text_key;
use serde_json::Value;

fn unhex(v: &Value) -> Vec<u8> {
    let s = v.as_str().unwrap();
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn class(name: &str) -> Class {
    match name {
        "e" => Class::Exact,
        "q" => Class::Int8,
        other => panic!("unknown class {other:?}"),
    }
}

fn classes(v: &Value) -> Vec<Class> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|c| class(c.as_str().unwrap()))
        .collect()
}

#[test]
fn text_keys_match_the_shared_vectors_after_the_workers_cleaning() {
    let data = common::vectors("text_keys.json");
    let model = data["model"].as_str().unwrap();
    let cases = data["cases"].as_array().unwrap();
    assert!(cases.len() >= 15);
    for case in cases {
        let name = case["name"].as_str().unwrap();
        // A raw cell as a parquet text column holds it: a string, a binary
        // value (decoded as the worker decodes binary columns), or a long one.
        let (raw_text, raw_bytes);
        let cell = if let Some(b) = case.get("bytes_hex") {
            raw_bytes = unhex(b);
            Cell::Bytes(&raw_bytes)
        } else if let Some(r) = case.get("repeat") {
            raw_text = r
                .as_str()
                .unwrap()
                .repeat(case["times"].as_u64().unwrap() as usize);
            Cell::Text(&raw_text)
        } else {
            Cell::Text(case["text"].as_str().unwrap())
        };
        let cleaned = clean(std::iter::once(cell));
        let text = &cleaned.texts[0];
        assert_eq!(
            cleaned.counts.rows_invalid_utf8,
            case["invalid_utf8"].as_u64().unwrap(),
            "{name}"
        );
        assert_eq!(
            text.len() as u64,
            case["cleaned_bytes"].as_u64().unwrap(),
            "{name}"
        );
        if let Some(h) = case["cleaned_utf8_hex"].as_str() {
            assert_eq!(hex(text.as_bytes()), h, "{name}");
        }
        assert_eq!(
            hex(&text_key(model, text)),
            case["key"].as_str().unwrap(),
            "{name}"
        );
    }
    let other = &data["other_model"];
    let key = text_key(
        other["model"].as_str().unwrap(),
        other["text"].as_str().unwrap(),
    );
    assert_eq!(hex(&key), other["key"].as_str().unwrap());
    assert_ne!(key, text_key(model, "lol"));
}

#[test]
fn entries_encode_and_decode_as_the_shared_vectors_say() {
    let data = common::vectors("reuse_entries.json");
    assert_eq!(data["entry_bytes"].as_u64().unwrap() as usize, ENTRY_BYTES);
    let min_cosine = data["min_cosine"].as_f64().unwrap();
    for g in data["good"].as_array().unwrap() {
        let cls = class(g["cls"].as_str().unwrap());
        let truncated = g["truncated"].as_bool().unwrap();
        let text_bytes = g["text_bytes"].as_u64().unwrap() as usize;
        let v: Vec<f32> = g["vector"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x.as_f64().unwrap() as f32)
            .collect();
        let value = encode_entry(cls, &v, truncated, text_bytes);
        assert_eq!(hex(&value), g["value_hex"].as_str().unwrap());
        let e = decode_entry(&value, &[cls], text_bytes).unwrap();
        assert_eq!((e.class, e.truncated), (cls, truncated));
        let cos: f64 = v
            .iter()
            .zip(&e.vector)
            .map(|(a, b)| f64::from(*a) * f64::from(*b))
            .sum();
        assert!(cos >= min_cosine, "cosine {cos}");
        let norm: f64 = e.vector.iter().map(|x| f64::from(*x).powi(2)).sum();
        assert!((norm.sqrt() - 1.0).abs() < 1e-6);
    }
    let ok = &data["accepted_by_int8"];
    let text_bytes = ok["text_bytes"].as_u64().unwrap() as usize;
    let accepted = decode_entry(
        &unhex(&ok["value_hex"]),
        &classes(&ok["classes"]),
        text_bytes,
    );
    assert_eq!(accepted.map(|e| e.class), Some(Class::Exact));
    for bad in data["bad"].as_array().unwrap() {
        let text_bytes = bad["text_bytes"].as_u64().unwrap() as usize;
        assert!(
            decode_entry(
                &unhex(&bad["value_hex"]),
                &classes(&bad["classes"]),
                text_bytes
            )
            .is_none(),
            "{}",
            bad["why"]
        );
    }
}
