//! A minimal stderr logger for the `log` facade: UTC time, level, message.

use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use log::{LevelFilter, Log, Metadata, Record};

struct StderrLogger;

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC (civil-from-days, no time zone database).
pub fn utc_now() -> String {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let (secs, ms) = (t.as_secs() as i64, t.subsec_millis());
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{ms:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

impl Log for StderrLogger {
    fn enabled(&self, m: &Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }

    fn log(&self, r: &Record<'_>) {
        if self.enabled(r.metadata()) && r.target().starts_with("embedfleet") {
            let _ = writeln!(
                std::io::stderr().lock(),
                "{} {} embedfleet-worker: {}",
                utc_now(),
                r.level(),
                r.args()
            );
        }
    }

    fn flush(&self) {}
}

/// Install the logger at `level` (`DEBUG`, `INFO`, `WARNING`, `ERROR`).
pub fn init(level: &str) {
    let filter = match level.to_ascii_uppercase().as_str() {
        "DEBUG" => LevelFilter::Debug,
        "WARNING" | "WARN" => LevelFilter::Warn,
        "ERROR" => LevelFilter::Error,
        _ => LevelFilter::Info,
    };
    if log::set_logger(&StderrLogger).is_ok() {
        log::set_max_level(filter);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn formats_utc_time() {
        let t = super::utc_now();
        assert_eq!(t.len(), 23);
        assert!(t.starts_with("20"), "{t}");
    }
}
