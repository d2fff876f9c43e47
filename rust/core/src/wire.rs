// Twin: bus/wire.py (docs/parity.md)
//! Reading a job message off a lane stream, strictly (twin of `bus/wire.py`;
//! `tests/vectors/hostile_messages.json` pins both).
//!
//! Every refusal is `CoreError::InvalidMessage`, whose text, the dead-letter
//! reason, is `invalid job message: <what>: <detail>`. `what` is stable (the
//! list is in `docs/protocol.md`); the detail is for people. Checks run in a
//! fixed order, so a message with several faults gets the same category in
//! both languages: size, UTF-8 and JSON, object, version, then the fields in
//! wire order.

use serde_json::{Map, Value};

use crate::constants::{
    DEFAULT_LANE, MAX_ATTEMPT, MAX_MESSAGE_BYTES, MAX_NAME_BYTES, MAX_PATH_BYTES, MAX_ROW,
    READABLE_VERSIONS,
};
use crate::error::CoreError;

pub const TOO_LARGE: &str = "too large";
pub const NO_JOB_FIELD: &str = "no job field";
pub const NOT_JSON: &str = "not JSON";
pub const NOT_OBJECT: &str = "not an object";
pub const UNSUPPORTED_VERSION: &str = "unsupported version";
/// Followed by the field's name: `missing field path`.
pub const MISSING_FIELD: &str = "missing field";
/// Followed by the field's name: `bad field attempt`.
pub const BAD_FIELD: &str = "bad field";
pub const UNSAFE_PATH: &str = "unsafe path";
pub const PATH_TOO_LONG: &str = "path too long";

/// A refusal: `what` is the stable category.
pub fn invalid(what: impl Into<String>, detail: impl Into<String>) -> CoreError {
    CoreError::InvalidMessage {
        what: what.into(),
        detail: detail.into(),
    }
}

/// The message's JSON object, after the checks of size, encoding, syntax
/// (serde_json's: no NaN, no lone surrogate, at most 127 levels), shape and
/// version.
pub fn decode(raw: &[u8]) -> Result<Map<String, Value>, CoreError> {
    if raw.len() > MAX_MESSAGE_BYTES {
        return Err(invalid(
            TOO_LARGE,
            format!("{} bytes, the limit is {MAX_MESSAGE_BYTES}", raw.len()),
        ));
    }
    let text = std::str::from_utf8(raw).map_err(|e| invalid(NOT_JSON, e.to_string()))?;
    let value: Value = serde_json::from_str(text).map_err(|e| invalid(NOT_JSON, e.to_string()))?;
    let Value::Object(map) = value else {
        return Err(invalid(
            NOT_OBJECT,
            format!("the message is a JSON {}", kind(&value)),
        ));
    };
    match map.get("v").and_then(Value::as_u64) {
        Some(v) if READABLE_VERSIONS.iter().any(|r| u64::from(*r) == v) => Ok(map),
        _ => Err(invalid(
            UNSUPPORTED_VERSION,
            format!(
                "v is {}; this worker reads {}",
                show(map.get("v")),
                READABLE_VERSIONS.map(|r| r.to_string()).join(" and ")
            ),
        )),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn show(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "absent or null".into(),
        Some(v) => {
            let text = v.to_string();
            if text.chars().count() <= 40 {
                text
            } else {
                format!("{}...", text.chars().take(37).collect::<String>())
            }
        }
    }
}

/// The value of a field, `None` when absent or null.
fn field<'a>(d: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    d.get(name).filter(|v| !v.is_null())
}

/// A field that must be a string.
pub fn required_text(d: &Map<String, Value>, name: &str) -> Result<String, CoreError> {
    match field(d, name) {
        None => Err(invalid(
            format!("{MISSING_FIELD} {name}"),
            format!("{name} is absent or null"),
        )),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(invalid(
            format!("{BAD_FIELD} {name}"),
            format!("{name} is a {}, not a string", kind(v)),
        )),
    }
}

/// A field that is absent, null or a non-empty string.
pub fn optional_text(d: &Map<String, Value>, name: &str) -> Result<Option<String>, CoreError> {
    match field(d, name) {
        None => Ok(None),
        Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
        v => Err(invalid(
            format!("{BAD_FIELD} {name}"),
            format!("{name} is {}, not a non-empty string", show(v)),
        )),
    }
}

/// `[start, end)`, integers with `0 <= start <= end <= MAX_ROW`, or none.
pub fn rows(d: &Map<String, Value>) -> Result<Option<(u64, u64)>, CoreError> {
    let Some(v) = field(d, "rows") else {
        return Ok(None);
    };
    let pair = match v.as_array().map(Vec::as_slice) {
        Some([s, e]) => s.as_u64().zip(e.as_u64()),
        _ => None,
    };
    match pair {
        Some((s, e)) if s <= e && e <= MAX_ROW => Ok(Some((s, e))),
        _ => Err(invalid(
            format!("{BAD_FIELD} rows"),
            format!(
                "{} is not a row range [start, end) with 0 <= start <= end",
                show(Some(v))
            ),
        )),
    }
}

/// An integer from 1 to `MAX_ATTEMPT`; 1 when absent or null.
pub fn attempt(d: &Map<String, Value>) -> Result<u32, CoreError> {
    let Some(v) = field(d, "attempt") else {
        return Ok(1);
    };
    match v.as_u64() {
        Some(n) if (1..=u64::from(MAX_ATTEMPT)).contains(&n) => Ok(n as u32),
        _ => Err(invalid(
            format!("{BAD_FIELD} attempt"),
            format!(
                "{} is not an integer from 1 to {MAX_ATTEMPT}",
                show(Some(v))
            ),
        )),
    }
}

/// Whether `name` is a lane name: `[A-Za-z0-9_.-]{1,64}`.
pub fn is_lane(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// A lane name; the default lane when absent or null.
pub fn lane(d: &Map<String, Value>) -> Result<String, CoreError> {
    match field(d, "lane") {
        None => Ok(DEFAULT_LANE.into()),
        Some(Value::String(s)) if is_lane(s) => Ok(s.clone()),
        v => Err(invalid(
            format!("{BAD_FIELD} lane"),
            format!("{} is not a lane name ([A-Za-z0-9_.-]{{1,64}})", show(v)),
        )),
    }
}

/// Refuse a path no file system can open (ENAMETOOLONG).
pub fn check_path_length(path: &str) -> Result<(), CoreError> {
    if path.len() > MAX_PATH_BYTES {
        return Err(invalid(
            PATH_TOO_LONG,
            format!(
                "the path has {} bytes, the limit is {MAX_PATH_BYTES}",
                path.len()
            ),
        ));
    }
    let longest = path.split('/').map(str::len).max().unwrap_or(0);
    if longest > MAX_NAME_BYTES {
        return Err(invalid(
            PATH_TOO_LONG,
            format!("a name of {longest} bytes, the limit is {MAX_NAME_BYTES}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn what(raw: &str) -> String {
        match decode(raw.as_bytes()).and_then(|d| attempt(&d).map(|_| ())) {
            Err(CoreError::InvalidMessage { what, .. }) => what,
            other => format!("{other:?}"),
        }
    }

    #[test]
    fn integers_must_be_json_integers_in_range() {
        let msg = |a: &str| format!("{{\"v\":2,\"attempt\":{a}}}");
        for bad in ["0", "-100", "2.0", "\"2\"", "true", "1e3", "2147483648"] {
            assert_eq!(what(&msg(bad)), "bad field attempt", "{bad}");
        }
        assert_eq!(what(&msg("NaN")), NOT_JSON);
        assert_eq!(what(&msg("1e400")), NOT_JSON);
        assert_eq!(what(&msg("2")), "Ok(())");
    }

    #[test]
    fn lanes_are_short_plain_names() {
        assert!(is_lane("gpu") && is_lane("a.b-c_9"));
        assert!(!is_lane("") && !is_lane("a b") && !is_lane("a:b") && !is_lane(&"x".repeat(65)));
    }
}
