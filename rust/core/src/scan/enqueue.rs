//! Pipelined, idempotent enqueue through the shared `bus/lua/enqueue.lua`
//! (a job whose id is already known is left alone), so two managers, or one
//! re-run after a crash, never queue a job twice.
//!
//! Jobs go in batches of one pipeline of `EVALSHA` calls each: one round trip
//! per batch. Calls refused with `NOSCRIPT` (the script cache was flushed,
//! e.g. by a Redis restart, during the enqueue) are sent again with `EVAL`
//! and the script's text, and the script is loaded again for what follows.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::time::Duration;

use redis::{
    Client, Connection, ConnectionAddr, IntoConnectionInfo, RedisConnectionInfo, RedisError,
    RedisResult,
};
use thiserror::Error;

use crate::constants::GROUP;
use crate::job::Job;
use crate::keys::Keys;
use crate::scripts::ENQUEUE;

/// Jobs per pipeline when the caller does not say.
pub const DEFAULT_BATCH: usize = 2_000;
/// How a batch calls the script.
#[derive(Clone, Copy)]
enum Call {
    /// `EVALSHA` (the script must be in Redis's script cache).
    Sha,
    /// `EVAL` with the script's text (after a `NOSCRIPT`).
    Text,
}

/// Where the bus is. `Debug` never shows the password.
#[derive(Clone, Default)]
pub struct RedisTarget {
    pub host: String,
    pub port: u16,
    pub db: i64,
    pub username: Option<String>,
    pub password: Option<String>,
    pub unix_socket: Option<String>,
    /// Connect, read and write timeout.
    pub timeout: Duration,
}

impl fmt::Debug for RedisTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisTarget")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("db", &self.db)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("unix_socket", &self.unix_socket)
            .finish()
    }
}

impl RedisTarget {
    /// A plain (non-TLS) connection with the target's timeouts.
    pub fn connect(&self) -> Result<Connection, BusError> {
        let addr = match &self.unix_socket {
            Some(path) => ConnectionAddr::Unix(path.into()),
            None => ConnectionAddr::Tcp(self.host.clone(), self.port),
        };
        let mut settings = RedisConnectionInfo::default()
            .set_db(self.db)
            .set_skip_set_lib_name();
        if let Some(u) = &self.username {
            settings = settings.set_username(u);
        }
        if let Some(p) = &self.password {
            settings = settings.set_password(p);
        }
        let info = addr.into_connection_info()?.set_redis_settings(settings);
        let timeout = if self.timeout.is_zero() {
            Duration::from_secs(10)
        } else {
            self.timeout
        };
        let con = Client::open(info)?.get_connection_with_timeout(timeout)?;
        con.set_read_timeout(Some(timeout))?;
        con.set_write_timeout(Some(timeout))?;
        Ok(con)
    }
}

/// A failure talking to the bus. Messages never hold the password.
#[derive(Debug, Error)]
pub enum BusError {
    /// Redis cannot be reached or is not ready: worth retrying later.
    #[error("Redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error.
    #[error("Redis error: {0}")]
    Redis(String),
}

impl From<RedisError> for BusError {
    fn from(e: RedisError) -> Self {
        let not_ready = matches!(e.code(), Some("LOADING" | "MASTERDOWN" | "TRYAGAIN"));
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || not_ready {
            BusError::Unavailable(e.to_string())
        } else {
            BusError::Redis(e.to_string())
        }
    }
}

/// What an enqueue did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EnqueueCounts {
    /// Jobs added to their lane.
    pub new: u64,
    /// Jobs already queued, done or dead: left alone.
    pub existing: u64,
}

/// Create the consumer group of each lane (and its stream), if missing.
pub fn ensure_groups<'a>(
    con: &mut Connection,
    keys: &Keys,
    lanes: impl IntoIterator<Item = &'a str>,
) -> Result<(), BusError> {
    for lane in lanes {
        let created: RedisResult<()> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(keys.queue(lane))
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query(con);
        match created {
            Ok(()) => {}
            Err(e) if e.code() == Some("BUSYGROUP") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Enqueue `jobs` (idempotent). With `redo`, jobs already done are queued
/// again; queued and dead ones never are.
pub fn enqueue(
    target: &RedisTarget,
    namespace: &str,
    jobs: &[Job],
    redo: bool,
    batch: usize,
) -> Result<EnqueueCounts, BusError> {
    let mut con = target.connect()?;
    enqueue_on(&mut con, namespace, jobs, redo, batch)
}

/// [`enqueue`] over an open connection.
pub fn enqueue_on(
    con: &mut Connection,
    namespace: &str,
    jobs: &[Job],
    redo: bool,
    batch: usize,
) -> Result<EnqueueCounts, BusError> {
    let keys = Keys::new(namespace);
    let lanes: BTreeSet<&str> = jobs.iter().map(|j| j.lane.as_str()).collect();
    ensure_groups(con, &keys, lanes.iter().copied())?;
    let queues: HashMap<&str, String> = lanes.iter().map(|l| (*l, keys.queue(l))).collect();
    let call = EnqueueCall {
        sha: redis::Script::new(ENQUEUE).get_hash().to_string(),
        state: keys.state(),
        stats: keys.stats(),
        lanes: keys.lanes(),
        queues,
        redo: if redo { "redo" } else { "" },
    };
    load_script(con)?;
    let mut counts = EnqueueCounts::default();
    for chunk in jobs.chunks(batch.max(1)) {
        call.run_batch(con, chunk, &mut counts)?;
    }
    Ok(counts)
}

fn load_script(con: &mut Connection) -> Result<(), BusError> {
    let _: String = redis::cmd("SCRIPT").arg("LOAD").arg(ENQUEUE).query(con)?;
    Ok(())
}

/// The fixed parts of every `EVALSHA enqueue` call.
struct EnqueueCall<'a> {
    sha: String,
    state: String,
    stats: String,
    lanes: String,
    queues: HashMap<&'a str, String>,
    redo: &'static str,
}

impl EnqueueCall<'_> {
    /// One pipeline of `EVALSHA` calls. Calls refused with `NOSCRIPT` (the
    /// script cache was flushed meanwhile) are sent again as `EVAL` with the
    /// script's text, which cannot fail that way, and the script is loaded
    /// again for the next batches.
    fn run_batch(
        &self,
        con: &mut Connection,
        batch: &[Job],
        counts: &mut EnqueueCounts,
    ) -> Result<(), BusError> {
        let all: Vec<&Job> = batch.iter().collect();
        let again = self.send(con, &all, Call::Sha, counts)?;
        if !again.is_empty() {
            let left = self.send(con, &again, Call::Text, counts)?;
            if !left.is_empty() {
                let n = left.len();
                return Err(BusError::Redis(format!(
                    "{n} jobs refused with NOSCRIPT even by EVAL"
                )));
            }
            load_script(con)?;
        }
        Ok(())
    }

    /// Send calls in one pipeline; returns the jobs refused with `NOSCRIPT`.
    fn send<'j>(
        &self,
        con: &mut Connection,
        jobs: &[&'j Job],
        how: Call,
        counts: &mut EnqueueCounts,
    ) -> Result<Vec<&'j Job>, BusError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for j in jobs {
            match how {
                Call::Sha => pipe.cmd("EVALSHA").arg(&self.sha),
                Call::Text => pipe.cmd("EVAL").arg(ENQUEUE),
            }
            .arg(4)
            .arg(&self.state)
            .arg(&self.queues[j.lane.as_str()])
            .arg(&self.stats)
            .arg(&self.lanes)
            .arg(&j.id)
            .arg(j.to_json())
            .arg(&j.lane)
            .arg(self.redo);
        }
        let replies: Vec<RedisResult<i64>> = pipe.query(con)?;
        let mut refused = Vec::new();
        for (j, reply) in jobs.iter().zip(replies) {
            match reply {
                Ok(1) => counts.new += 1,
                Ok(_) => counts.existing += 1,
                Err(e) if e.code() == Some("NOSCRIPT") => refused.push(*j),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(refused)
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::process::{Child, Command, Stdio};
    use std::thread::sleep;

    use super::*;

    /// A private redis-server on a free port, killed when dropped.
    struct Server {
        child: Child,
        target: RedisTarget,
    }

    impl Server {
        fn start() -> Server {
            let port = TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let child = Command::new("redis-server")
                .args([
                    "--port",
                    &port.to_string(),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ])
                .stdout(Stdio::null())
                .spawn()
                .expect("redis-server must be installed (make setup)");
            let target = RedisTarget {
                host: "127.0.0.1".into(),
                port,
                timeout: Duration::from_secs(5),
                ..Default::default()
            };
            let server = Server { child, target };
            for _ in 0..400 {
                if server.target.connect().is_ok() {
                    return server;
                }
                sleep(Duration::from_millis(25));
            }
            panic!("redis-server did not start on port {port}");
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    fn jobs(n: usize) -> Vec<Job> {
        (0..n)
            .map(|i| {
                let path = format!("chains/s/sub/p-{i}.parquet");
                Job::create(
                    &path,
                    "1-2",
                    "m@1",
                    None,
                    "text",
                    None,
                    if i % 3 == 0 { "gpu" } else { "default" },
                )
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn enqueue_is_idempotent_and_creates_the_groups() {
        let server = Server::start();
        let js = jobs(250);
        let first = enqueue(&server.target, "t", &js, false, 64).unwrap();
        assert_eq!(
            first,
            EnqueueCounts {
                new: 250,
                existing: 0
            }
        );
        let again = enqueue(&server.target, "t", &js, false, 1000).unwrap();
        assert_eq!(
            again,
            EnqueueCounts {
                new: 0,
                existing: 250
            }
        );
        let mut con = server.target.connect().unwrap();
        let keys = Keys::new("t");
        let (gpu, default): (u64, u64) = redis::pipe()
            .cmd("XLEN")
            .arg(keys.queue("gpu"))
            .cmd("XLEN")
            .arg(keys.queue("default"))
            .query(&mut con)
            .unwrap();
        assert_eq!((gpu, default), (84, 166));
        let groups: redis::Value = redis::cmd("XINFO")
            .arg("GROUPS")
            .arg(keys.queue("gpu"))
            .query(&mut con)
            .unwrap();
        assert!(format!("{groups:?}").contains(GROUP));
    }

    #[test]
    fn a_flushed_script_cache_is_reloaded_and_nothing_is_lost() {
        let server = Server::start();
        let mut con = server.target.connect().unwrap();
        let keys = Keys::new("t");
        ensure_groups(&mut con, &keys, ["default", "gpu"]).unwrap();
        let call = EnqueueCall {
            sha: redis::Script::new(ENQUEUE).get_hash().to_string(),
            state: keys.state(),
            stats: keys.stats(),
            lanes: keys.lanes(),
            queues: [
                ("default", keys.queue("default")),
                ("gpu", keys.queue("gpu")),
            ]
            .into(),
            redo: "",
        };
        let _: () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut con).unwrap();
        let mut counts = EnqueueCounts::default();
        call.run_batch(&mut con, &jobs(10), &mut counts).unwrap();
        assert_eq!(
            counts,
            EnqueueCounts {
                new: 10,
                existing: 0
            }
        );
    }

    #[test]
    fn an_unreachable_redis_is_unavailable_and_the_password_stays_hidden() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let target = RedisTarget {
            host: "127.0.0.1".into(),
            port,
            password: Some("hunter2-secret".into()),
            timeout: Duration::from_secs(2),
            ..Default::default()
        };
        let err = enqueue(&target, "t", &jobs(1), false, 10).unwrap_err();
        assert!(matches!(err, BusError::Unavailable(_)), "{err:?}");
        assert!(!err.to_string().contains("hunter2"));
        assert!(!format!("{target:?}").contains("hunter2"));
    }
}
