// Twin: workers/limits.py (docs/parity.md)
//! Resource ceilings (twin of `workers/limits.py`): a memory ceiling
//! (`--max-memory`) kept by shrinking chunks and batches, or by refusing a
//! part that cannot fit (retried, so a worker with more memory may take it),
//! instead of being killed by the operating system; and a cap on open files.

use crate::error::{Result, WorkerError};

/// Fewer descriptors than this cannot hold the model, Redis and the files.
pub const MIN_OPEN_FILES: u64 = 64;

/// `"4G"`, `"512M"`, `"1.5GiB"`, `"1000000"` -> bytes.
pub fn parse_size(text: &str) -> Result<u64> {
    let bad = || WorkerError::Usage(format!("not a size: {text:?} (use e.g. 4G, 512M, 1.5GiB)"));
    let t = text.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let t = t.strip_suffix('i').unwrap_or(t);
    let (num, unit) = match t.char_indices().find(|(_, c)| c.is_ascii_alphabetic()) {
        Some((i, _)) => (&t[..i], &t[i..]),
        None => (t, ""),
    };
    let mult: u64 = match unit {
        "" => 1,
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        "t" => 1 << 40,
        _ => return Err(bad()),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 {
        return Err(bad());
    }
    Ok((n * mult as f64) as u64)
}

/// Resident memory of this process now (bytes).
pub fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    pages * u64::try_from(page).unwrap_or(4096)
}

/// Peak resident memory of this process so far (bytes).
pub fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Lower the soft `RLIMIT_NOFILE` to `limit` (never above the hard one).
pub fn cap_open_files(limit: u64) -> Result<u64> {
    if limit < MIN_OPEN_FILES {
        return Err(WorkerError::Usage(format!(
            "--max-open-files {limit} is below the minimum of {MIN_OPEN_FILES}"
        )));
    }
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `rl` is a valid rlimit the kernel fills in / reads.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) != 0 {
            return Err(WorkerError::Usage("cannot read the open-file limit".into()));
        }
        rl.rlim_cur = if rl.rlim_max == libc::RLIM_INFINITY {
            limit
        } else {
            limit.min(rl.rlim_max)
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &rl) != 0 {
            return Err(WorkerError::Usage(format!(
                "cannot set the open-file limit to {limit}"
            )));
        }
    }
    Ok(rl.rlim_cur)
}

/// How much more memory the worker may use; unlimited without a ceiling.
#[derive(Debug, Clone, Copy, Default)]
pub struct MemoryBudget {
    pub ceiling: Option<u64>,
}

impl MemoryBudget {
    pub fn new(ceiling: Option<u64>) -> Self {
        MemoryBudget { ceiling }
    }

    /// Bytes left under the ceiling right now (None: no ceiling).
    pub fn headroom(&self) -> Option<u64> {
        self.ceiling.map(|c| c.saturating_sub(rss_bytes()))
    }

    /// Largest count up to `wanted` whose working set (`bytes_each`) fits in
    /// `share` of the headroom; `minimum` always.
    pub fn fit(&self, wanted: usize, bytes_each: u64, minimum: usize, share: f64) -> usize {
        match self.headroom() {
            None => wanted,
            Some(room) => {
                let fit = ((room as f64 * share) as u64 / bytes_each.max(1)) as usize;
                fit.min(wanted).max(minimum)
            }
        }
    }

    /// Refuse work whose smallest working set (`need` bytes) cannot fit.
    pub fn require(&self, need: u64, what: &str) -> Result<()> {
        match self.headroom() {
            Some(room) if need > room => Err(WorkerError::PartTooLarge(format!(
                "{what}: needs about {} MiB but --max-memory leaves {} MiB",
                need >> 20,
                room >> 20
            ))),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sizes_like_the_python_worker() {
        assert_eq!(parse_size("4G").unwrap(), 4 << 30);
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("1.5GiB").unwrap(), 3 << 29);
        assert_eq!(parse_size("1000").unwrap(), 1000);
        assert!(parse_size("lots").is_err());
        assert!(parse_size("4X").is_err());
    }

    #[test]
    fn a_ceiling_below_the_current_rss_refuses_and_shrinks() {
        assert!(rss_bytes() > 0 && peak_rss_bytes() >= rss_bytes() / 2);
        let tight = MemoryBudget::new(Some(1));
        assert_eq!(tight.headroom(), Some(0));
        assert!(matches!(
            tight.require(1 << 20, "p"),
            Err(WorkerError::PartTooLarge(_))
        ));
        assert_eq!(tight.fit(1000, 10, 7, 0.5), 7);
        assert_eq!(MemoryBudget::new(None).fit(1000, 10, 7, 0.5), 1000);
    }
}
