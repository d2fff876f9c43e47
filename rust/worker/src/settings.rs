// Twin: bus/settings.py (docs/parity.md)
//! Redis settings from a URL (twin of `bus/settings.py`). A password comes
//! from the URL or `EMBEDFLEET_REDIS_PASSWORD`; it never appears in a log, an
//! event or an error: everything that prints the URL prints `redacted()`.

use std::fmt;

use embedfleet_core::constants::DEFAULT_NAMESPACE;
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisConnectionInfo};

use crate::error::{Result, WorkerError};

pub const ENV_URL: &str = "EMBEDFLEET_REDIS_URL";
pub const ENV_PASSWORD: &str = "EMBEDFLEET_REDIS_PASSWORD";
pub const ENV_NAMESPACE: &str = "EMBEDFLEET_NAMESPACE";
/// Redis of the reuse store when not the bus's (`--reuse-url`).
pub const ENV_REUSE_URL: &str = "EMBEDFLEET_REUSE_URL";
/// `0` (or `false`, `no`, `off`) switches the reuse store off (`--no-reuse`).
pub const ENV_REUSE: &str = "EMBEDFLEET_REUSE";

/// Whether a value of `EMBEDFLEET_REUSE` switches the reuse store off.
pub fn switched_off(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "0" | "false" | "no" | "off"
    )
}

/// Where the bus is and how to log in; `Debug` never shows the password.
#[derive(Clone, PartialEq, Eq)]
pub struct RedisSettings {
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub username: Option<String>,
    password: Option<String>,
    pub unix_socket: Option<String>,
    pub namespace: String,
}

impl fmt::Debug for RedisSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RedisSettings({}, namespace {})",
            self.redacted(),
            self.namespace
        )
    }
}

fn usage(msg: String) -> WorkerError {
    WorkerError::Usage(msg)
}

/// `%XX` escapes of a URL's user or password.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok());
        match (bytes[i], hex.and_then(|h| u8::from_str_radix(h, 16).ok())) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `user:password@rest` -> (user, password, rest).
fn split_auth(rest: &str) -> (Option<String>, Option<String>, &str) {
    match rest.rfind('@') {
        None => (None, None, rest),
        Some(at) => {
            let (auth, tail) = (&rest[..at], &rest[at + 1..]);
            let (user, pw) = match auth.split_once(':') {
                Some((u, p)) => (u, Some(p)),
                None => (auth, None),
            };
            let user = (!user.is_empty()).then(|| percent_decode(user));
            (user, pw.filter(|p| !p.is_empty()).map(percent_decode), tail)
        }
    }
}

impl RedisSettings {
    /// Parse `redis://[user[:pw]@]host[:port][/db]` or `unix://[:pw@]/path`.
    pub fn from_url(url: &str, namespace: Option<&str>) -> Result<Self> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| usage("Redis URL has no scheme (use redis:// or unix://)".into()))?;
        let (username, pw, rest) = split_auth(rest);
        let password = pw.or_else(|| std::env::var(ENV_PASSWORD).ok().filter(|p| !p.is_empty()));
        let namespace = namespace
            .map(str::to_string)
            .or_else(|| std::env::var(ENV_NAMESPACE).ok().filter(|n| !n.is_empty()))
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        let mut s = RedisSettings {
            host: "127.0.0.1".into(),
            port: 6379,
            db: 0,
            username,
            password,
            unix_socket: None,
            namespace,
        };
        match scheme {
            "unix" => s.unix_socket = Some(rest.split('?').next().unwrap_or(rest).to_string()),
            "redis" => s.parse_host(rest)?,
            "rediss" => return Err(usage(
                "rediss:// (TLS) is not built into this worker: use redis:// through a TLS tunnel"
                    .into(),
            )),
            other => {
                return Err(usage(format!(
                    "unsupported Redis URL scheme {other:?} (use redis:// or unix://)"
                )))
            }
        }
        Ok(s)
    }

    fn parse_host(&mut self, rest: &str) -> Result<()> {
        let (hostport, db) = rest.split_once('/').unwrap_or((rest, ""));
        let db = db.split('?').next().unwrap_or("");
        if !db.is_empty() {
            self.db = db
                .parse()
                .map_err(|_| usage(format!("bad Redis database number {db:?}")))?;
        }
        let (host, port) = match hostport.strip_prefix('[').and_then(|h| h.split_once(']')) {
            Some((v6, tail)) => (v6, tail.strip_prefix(':')),
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        let port = match port {
            Some(p) => Some(
                p.parse::<u16>()
                    .map_err(|_| usage(format!("bad Redis port {p:?}")))?,
            ),
            None => None,
        };
        if !host.is_empty() {
            self.host = host.to_string();
        }
        if let Some(p) = port {
            self.port = p;
        }
        Ok(())
    }

    /// A URL safe to print: the password replaced by `***`.
    pub fn redacted(&self) -> String {
        let auth = match &self.password {
            Some(_) => format!("{}:***@", self.username.as_deref().unwrap_or("")),
            None => String::new(),
        };
        match &self.unix_socket {
            Some(path) => format!("unix://{auth}{path}"),
            None => format!("redis://{auth}{}:{}/{}", self.host, self.port, self.db),
        }
    }

    /// Remove the password from any text about to be printed or sent.
    pub fn scrub(&self, text: &str) -> String {
        match &self.password {
            Some(pw) if !pw.is_empty() => text.replace(pw.as_str(), "***"),
            _ => text.to_string(),
        }
    }

    /// What redis-rs needs to connect.
    pub fn connection_info(&self) -> Result<ConnectionInfo> {
        let addr = match &self.unix_socket {
            Some(p) => ConnectionAddr::Unix(p.into()),
            None => ConnectionAddr::Tcp(self.host.clone(), self.port),
        };
        let mut redis = RedisConnectionInfo::default().set_db(self.db);
        if let Some(u) = &self.username {
            redis = redis.set_username(u);
        }
        if let Some(p) = &self.password {
            redis = redis.set_password(p);
        }
        let info = addr
            .into_connection_info()
            .map_err(|e| usage(format!("bad Redis address: {e}")))?;
        Ok(info.set_redis_settings(redis))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_host_port_db_and_hides_the_password() {
        let s =
            RedisSettings::from_url("redis://bob:s%40cret@example.org:6380/2", Some("ns")).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.db), ("example.org", 6380, 2));
        assert_eq!(s.username.as_deref(), Some("bob"));
        assert_eq!(s.password.as_deref(), Some("s@cret"));
        assert_eq!(s.redacted(), "redis://bob:***@example.org:6380/2");
        assert!(!format!("{s:?}").contains("s@cret"));
        assert_eq!(s.scrub("auth s@cret failed"), "auth *** failed");
    }

    #[test]
    fn defaults_and_unix_sockets() {
        let s = RedisSettings::from_url("redis://", Some("x")).unwrap();
        assert_eq!((s.host.as_str(), s.port, s.db), ("127.0.0.1", 6379, 0));
        let u = RedisSettings::from_url("unix:///run/redis.sock", Some("x")).unwrap();
        assert_eq!(u.unix_socket.as_deref(), Some("/run/redis.sock"));
        assert_eq!(u.redacted(), "unix:///run/redis.sock");
    }

    #[test]
    fn reuse_switch_values() {
        for off in ["0", "false", "No", " off "] {
            assert!(switched_off(off), "{off:?}");
        }
        for on in ["1", "", "yes", "true"] {
            assert!(!switched_off(on), "{on:?}");
        }
    }

    #[test]
    fn refuses_unknown_schemes_and_bad_ports() {
        assert!(RedisSettings::from_url("http://x", None).is_err());
        assert!(RedisSettings::from_url("redis://h:notaport/0", None).is_err());
        assert!(RedisSettings::from_url("rediss://h:6379/0", None).is_err());
    }
}
