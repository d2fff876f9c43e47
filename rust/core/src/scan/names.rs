//! Output file names back to their inputs: `f.parquet` is the whole-file
//! output of input `f.parquet`, and `f.rows-<start>-<end>.parquet` a part of
//! it (see `job::output_path`).

use super::walk::PARQUET_EXT;

const PART_MARK: &str = ".rows-";

/// For an output name that looks like a part, the input name it belongs to
/// and its row range.
pub fn parse_part(name: &str) -> Option<(String, (u64, u64))> {
    let base = name.strip_suffix(PARQUET_EXT)?;
    let at = base.rfind(PART_MARK)?;
    let (stem, range) = (&base[..at], &base[at + PART_MARK.len()..]);
    let (s, e) = range.split_once('-')?;
    let num = |x: &str| {
        (!x.is_empty() && x.bytes().all(|b| b.is_ascii_digit())).then(|| x.parse::<u64>().ok())?
    };
    let (s, e) = (num(s)?, num(e)?);
    if stem.is_empty() || s > e {
        return None;
    }
    Some((format!("{stem}{PARQUET_EXT}"), (s, e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::output_path;

    #[test]
    fn parts_parse_back_to_their_input() {
        assert_eq!(
            parse_part("part-1.rows-0-200.parquet"),
            Some(("part-1.parquet".into(), (0, 200)))
        );
        assert_eq!(
            parse_part("a.b.rows-10-20.parquet"),
            Some(("a.b.parquet".into(), (10, 20)))
        );
        assert_eq!(parse_part("part-1.parquet"), None);
        assert_eq!(parse_part("x.rows-20-10.parquet"), None);
        assert_eq!(parse_part("x.rows--10.parquet"), None);
        assert_eq!(parse_part("x.rows-1-+2.parquet"), None);
        assert_eq!(parse_part(".rows-1-2.parquet"), None);
    }

    #[test]
    fn parsing_inverts_output_path() {
        for name in ["p.parquet", "a.b.parquet", "x.rows-1-2.parquet"] {
            let out = output_path(&format!("chains/s/sub/{name}"), Some((5, 9))).unwrap();
            let out_name = out.rsplit('/').next().unwrap();
            assert_eq!(parse_part(out_name), Some((name.to_string(), (5, 9))));
        }
    }
}
