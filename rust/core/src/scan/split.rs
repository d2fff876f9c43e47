//! Row-range splitting: a file with more rows than `rows_per_part` becomes
//! several jobs, each a run of whole row groups, so that a worker reads only
//! the groups of its part. A single row group larger than `rows_per_part`
//! cannot be cut on a group boundary and becomes a part of its own.

use super::footer::RowGroup;

/// One row-range job of a split file: rows `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Part {
    pub start: u64,
    pub end: u64,
    /// Compressed bytes of the part's row groups (its size for lane routing).
    pub bytes: u64,
}

/// Parts of a file with these row groups; empty when the file is one job
/// (at most `rows_per_part` rows, or `rows_per_part == 0`: never split).
///
/// Greedy: groups are added to the current part while it stays within
/// `rows_per_part`; a part always takes at least one group.
pub fn plan_parts(groups: &[RowGroup], rows_per_part: u64) -> Vec<Part> {
    let total: u64 = groups.iter().map(|g| g.rows).sum();
    if rows_per_part == 0 || total <= rows_per_part {
        return Vec::new();
    }
    let mut parts = Vec::new();
    let mut cur = Part {
        start: 0,
        end: 0,
        bytes: 0,
    };
    for g in groups.iter().filter(|g| g.rows > 0) {
        if cur.end > cur.start && cur.end - cur.start + g.rows > rows_per_part {
            parts.push(cur);
            cur = Part {
                start: cur.end,
                end: cur.end,
                bytes: 0,
            };
        }
        cur.end += g.rows;
        cur.bytes += g.bytes;
    }
    if cur.end > cur.start {
        parts.push(cur);
    }
    parts
}

/// Whether row ranges cover `[0, total)` exactly, without gap or overlap.
pub fn tiles(ranges: &mut [(u64, u64)], total: u64) -> bool {
    ranges.sort_unstable();
    let mut next = 0;
    for &(s, e) in ranges.iter() {
        if s != next || e < s {
            return false;
        }
        next = e;
    }
    next == total && !ranges.is_empty()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(rows: &[u64]) -> Vec<RowGroup> {
        rows.iter()
            .map(|&r| RowGroup {
                rows: r,
                bytes: r * 10,
            })
            .collect()
    }

    #[test]
    fn small_file_is_one_job() {
        assert!(plan_parts(&groups(&[100, 100]), 200).is_empty());
        assert!(plan_parts(&groups(&[]), 200).is_empty());
        assert!(plan_parts(&groups(&[1000]), 0).is_empty());
    }

    #[test]
    fn parts_are_aligned_to_row_groups() {
        let p = plan_parts(&groups(&[100, 100, 100, 100, 100]), 250);
        let ranges: Vec<_> = p.iter().map(|p| (p.start, p.end, p.bytes)).collect();
        assert_eq!(
            ranges,
            vec![(0, 200, 2000), (200, 400, 2000), (400, 500, 1000)]
        );
    }

    #[test]
    fn an_oversized_group_is_a_part_of_its_own() {
        let p = plan_parts(&groups(&[50, 400, 50, 50]), 100);
        let ranges: Vec<_> = p.iter().map(|p| (p.start, p.end)).collect();
        assert_eq!(ranges, vec![(0, 50), (50, 450), (450, 550)]);
    }

    #[test]
    fn empty_row_groups_are_skipped() {
        let p = plan_parts(&groups(&[0, 60, 0, 60, 60]), 100);
        let ranges: Vec<_> = p.iter().map(|p| (p.start, p.end)).collect();
        assert_eq!(ranges, vec![(0, 60), (60, 120), (120, 180)]);
    }

    #[test]
    fn tiling_needs_exact_cover() {
        assert!(tiles(&mut [(100, 180), (0, 100)], 180));
        assert!(!tiles(&mut [(0, 100)], 180));
        assert!(!tiles(&mut [(0, 100), (90, 180)], 180));
        assert!(!tiles(&mut [], 0));
    }
}
