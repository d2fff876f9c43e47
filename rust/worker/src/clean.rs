// Twin: workers/cleaning.py (docs/parity.md)
//! Row cleaning, as the Python worker does it (`workers/cleaning.py`):
//! null -> skipped and counted; empty or whitespace-only -> embedded as is
//! and counted; invalid UTF-8 -> decoded with U+FFFD and counted. Truncation
//! and deduplication are counted where they happen (`batching`).

use std::borrow::Cow;

use serde::Serialize;

/// Per-job row counts; they go into the output metadata and the events.
/// `rows_embedded = model_calls + rows_deduplicated + rows_reused
/// = rows_exact + rows_int8`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub rows_total: u64,
    pub rows_embedded: u64,
    pub rows_null: u64,
    pub rows_empty: u64,
    pub rows_invalid_utf8: u64,
    pub rows_truncated: u64,
    /// Rows that repeat a text this job computed itself.
    pub rows_deduplicated: u64,
    /// Texts this job sent to the model.
    pub model_calls: u64,
    /// Rows whose vector came from the reuse store.
    pub rows_reused: u64,
    /// Rows by the precision class of their vector.
    pub rows_exact: u64,
    pub rows_int8: u64,
}

impl Counts {
    /// Metadata key names (after `embedfleet.`), in their fixed order.
    pub const NAMES: [&'static str; 11] = [
        "rows_total",
        "rows_embedded",
        "rows_null",
        "rows_empty",
        "rows_invalid_utf8",
        "rows_truncated",
        "rows_deduplicated",
        "model_calls",
        "rows_reused",
        "rows_exact",
        "rows_int8",
    ];

    /// `(name, value)` in the fixed order of the metadata keys.
    pub fn fields(&self) -> [(&'static str, u64); 11] {
        let values = [
            self.rows_total,
            self.rows_embedded,
            self.rows_null,
            self.rows_empty,
            self.rows_invalid_utf8,
            self.rows_truncated,
            self.rows_deduplicated,
            self.model_calls,
            self.rows_reused,
            self.rows_exact,
            self.rows_int8,
        ];
        std::array::from_fn(|i| (Self::NAMES[i], values[i]))
    }

    /// Counts from `(name, value)` pairs (missing names are 0).
    pub fn from_fields(get: impl Fn(&str) -> u64) -> Counts {
        Counts {
            rows_total: get("rows_total"),
            rows_embedded: get("rows_embedded"),
            rows_null: get("rows_null"),
            rows_empty: get("rows_empty"),
            rows_invalid_utf8: get("rows_invalid_utf8"),
            rows_truncated: get("rows_truncated"),
            rows_deduplicated: get("rows_deduplicated"),
            model_calls: get("model_calls"),
            rows_reused: get("rows_reused"),
            rows_exact: get("rows_exact"),
            rows_int8: get("rows_int8"),
        }
    }

    pub fn add(&mut self, o: &Counts) {
        self.rows_total += o.rows_total;
        self.rows_embedded += o.rows_embedded;
        self.rows_null += o.rows_null;
        self.rows_empty += o.rows_empty;
        self.rows_invalid_utf8 += o.rows_invalid_utf8;
        self.rows_truncated += o.rows_truncated;
        self.rows_deduplicated += o.rows_deduplicated;
        self.model_calls += o.model_calls;
        self.rows_reused += o.rows_reused;
        self.rows_exact += o.rows_exact;
        self.rows_int8 += o.rows_int8;
    }
}

/// One raw cell of the text column.
pub enum Cell<'a> {
    Null,
    Text(&'a str),
    Bytes(&'a [u8]),
}

/// The kept rows of one chunk: their positions in the chunk and their texts.
#[derive(Debug, Default)]
pub struct Cleaned<'a> {
    pub positions: Vec<u32>,
    pub texts: Vec<Cow<'a, str>>,
    pub counts: Counts,
}

/// Whitespace as Python's `str.strip()` sees it (Unicode White_Space plus the
/// ASCII separators U+001C..U+001F), so both workers count `rows_empty` alike.
fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

pub fn is_blank(text: &str) -> bool {
    text.chars().all(is_py_space)
}

/// Apply the cleaning rules to one chunk of cells.
pub fn clean<'a>(cells: impl ExactSizeIterator<Item = Cell<'a>>) -> Cleaned<'a> {
    let mut out = Cleaned {
        counts: Counts {
            rows_total: cells.len() as u64,
            ..Counts::default()
        },
        ..Default::default()
    };
    for (i, cell) in cells.enumerate() {
        let text = match cell {
            Cell::Null => {
                out.counts.rows_null += 1;
                continue;
            }
            Cell::Text(t) => Cow::Borrowed(t),
            Cell::Bytes(b) => {
                let t = String::from_utf8_lossy(b);
                if matches!(t, Cow::Owned(_)) {
                    out.counts.rows_invalid_utf8 += 1;
                }
                t
            }
        };
        if is_blank(&text) {
            out.counts.rows_empty += 1;
        }
        out.positions.push(i as u32);
        out.texts.push(text);
    }
    out.counts.rows_embedded = out.texts.len() as u64;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_by_name() {
        let c = Counts {
            rows_total: 1,
            rows_embedded: 2,
            rows_null: 3,
            rows_empty: 4,
            rows_invalid_utf8: 5,
            rows_truncated: 6,
            rows_deduplicated: 7,
            model_calls: 8,
            rows_reused: 9,
            rows_exact: 10,
            rows_int8: 11,
        };
        let f = c.fields();
        assert_eq!(
            Counts::from_fields(|k| f.iter().find(|(n, _)| *n == k).unwrap().1),
            c
        );
    }

    #[test]
    fn counts_nulls_blanks_and_invalid_utf8() {
        let cells = vec![
            Cell::Null,
            Cell::Text("hello"),
            Cell::Text(" \t\n"),
            Cell::Text(""),
            Cell::Bytes(b"ok"),
            Cell::Bytes(b"bad \xff byte"),
            Cell::Text("\u{1f}"),
        ];
        let c = clean(cells.into_iter());
        assert_eq!(c.positions, vec![1, 2, 3, 4, 5, 6]);
        assert_eq!(c.texts[4], "bad \u{fffd} byte");
        assert_eq!(
            c.counts,
            Counts {
                rows_total: 7,
                rows_embedded: 6,
                rows_null: 1,
                rows_empty: 3,
                rows_invalid_utf8: 1,
                ..Counts::default()
            }
        );
    }
}
