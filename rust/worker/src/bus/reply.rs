//! Reading the untyped replies of stream commands (RESP2 arrays).

use redis::Value;

/// A bulk or simple string as text.
pub fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Okay => Some("OK".into()),
        Value::Int(i) => Some(i.to_string()),
        _ => None,
    }
}

/// An integer, also when sent as a string.
pub fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other).and_then(|s| s.parse().ok()),
    }
}

pub fn items(v: &Value) -> &[Value] {
    match v {
        Value::Array(a) | Value::Set(a) => a,
        _ => &[],
    }
}

/// Key/value pairs of a flat `[k1, v1, k2, v2, ..]` array or a map.
pub fn pairs(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| text(k).map(|k| (k, v)))
            .collect(),
        _ => items(v)
            .chunks(2)
            .filter_map(|c| Some((text(c.first()?)?, c.get(1)?)))
            .collect(),
    }
}

/// The bytes of a bulk or simple string.
pub fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        other => text(other).map(String::into_bytes),
    }
}

/// What a stream entry holds of the one field asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Body {
    /// The entry was deleted (claimed after a trim): nothing to read.
    Deleted,
    /// The entry has no such field.
    Missing,
    /// The field's value, as sent (not necessarily UTF-8).
    Value(Vec<u8>),
}

/// One stream entry: its id and what it holds of the field asked for.
pub type Entry = (String, Body);

/// Entries of a `[[id, [f, v, ..]], ..]` list.
pub fn entries(v: &Value, field: &str) -> Vec<Entry> {
    items(v)
        .iter()
        .filter_map(|e| {
            let parts = items(e);
            let id = text(parts.first()?)?;
            let body = match parts.get(1) {
                None | Some(Value::Nil) => Body::Deleted,
                Some(f) => pairs(f)
                    .into_iter()
                    .find(|(k, _)| k == field)
                    .and_then(|(_, v)| bytes(v))
                    .map_or(Body::Missing, Body::Value),
            };
            Some((id, body))
        })
        .collect()
}

/// `XREADGROUP` reply: per stream key, its entries.
pub fn read_reply(v: &Value, field: &str) -> Vec<(String, Vec<Entry>)> {
    match v {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, e)| Some((text(k)?, entries(e, field))))
            .collect(),
        _ => items(v)
            .iter()
            .filter_map(|s| {
                let parts = items(s);
                Some((text(parts.first()?)?, entries(parts.get(1)?, field)))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn reads_stream_entries_and_pairs() {
        let entry = Value::Array(vec![b("1-0"), Value::Array(vec![b("job"), b("{}")])]);
        let reply = Value::Array(vec![Value::Array(vec![b("q"), Value::Array(vec![entry])])]);
        assert_eq!(
            read_reply(&reply, "job"),
            vec![(
                "q".to_string(),
                vec![("1-0".to_string(), Body::Value(b"{}".to_vec()))]
            )]
        );
        let odd = Value::Array(vec![
            Value::Array(vec![b("2-0"), Value::Array(vec![b("other"), b("x")])]),
            Value::Array(vec![b("3-0"), Value::Nil]),
            Value::Array(vec![
                b("4-0"),
                Value::Array(vec![b("job"), Value::BulkString(vec![0xff])]),
            ]),
        ]);
        assert_eq!(
            entries(&odd, "job"),
            vec![
                ("2-0".to_string(), Body::Missing),
                ("3-0".to_string(), Body::Deleted),
                ("4-0".to_string(), Body::Value(vec![0xff])),
            ],
            "an entry without the field, a deleted one, bytes that are not UTF-8"
        );
        let kv = Value::Array(vec![b("name"), b("workers"), b("pending"), Value::Int(3)]);
        let p = pairs(&kv);
        assert_eq!(p.len(), 2);
        assert_eq!(int(p[1].1), Some(3));
    }
}
