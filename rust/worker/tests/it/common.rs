//! Test support: a real Redis (`EMBEDFLEET_TEST_REDIS_URL`, else a private
//! redis-server on a free port), per-test namespaces, the shared vectors, and
//! a deterministic stand-in embedder.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use embedfleet_worker::bus::RedisBus;
use embedfleet_worker::settings::RedisSettings;
use embedfleet_worker::stand_in::HashEmbedder;

/// The repository root (vectors live under `tests/vectors`).
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub fn vectors(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(repo().join("tests/vectors").join(name)).unwrap();
    serde_json::from_str(&text).unwrap()
}

struct Server {
    url: String,
    _child: Option<Child>,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_server() -> Server {
    if let Ok(url) = std::env::var("EMBEDFLEET_TEST_REDIS_URL") {
        if !url.is_empty() {
            return Server { url, _child: None };
        }
    }
    let port = free_port();
    let dir = std::env::temp_dir().join(format!("ef-rust-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
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
        .args(["--protected-mode", "no", "--dir", dir.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is not installed: run `make setup` (Debian package redis-server)");
    let url = format!("redis://127.0.0.1:{port}/0");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "redis-server did not start on port {port}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    Server {
        url,
        _child: Some(child),
    }
}

/// URL of the test Redis. A private server lives until the test binary exits
/// (`--save ""`, nothing on disk); it is killed by `kill_private_redis` at exit.
pub fn redis_url() -> String {
    static SERVER: OnceLock<Server> = OnceLock::new();
    let s = SERVER.get_or_init(|| {
        let s = start_server();
        if let Some(child) = &s._child {
            let pid = child.id();
            // Reap the server when the test process ends (no background process left behind).
            let _ = Command::new("sh")
                .args([
                    "-c",
                    &format!(
                        "while kill -0 {} 2>/dev/null; do sleep 0.5; done; kill {pid} 2>/dev/null",
                        std::process::id()
                    ),
                ])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
        }
        s
    });
    s.url.clone()
}

/// A namespace no other test uses.
pub fn namespace(tag: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "eft-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

pub fn bus(tag: &str, lease_ms: u64) -> RedisBus {
    let settings = RedisSettings::from_url(&redis_url(), Some(&namespace(tag))).unwrap();
    RedisBus::new(settings, lease_ms).with_autoclaim_every(Duration::ZERO)
}

/// The stand-in embedder of `--embedder hash`.
pub fn hash_embedder(model: &str) -> Box<HashEmbedder> {
    Box::new(HashEmbedder::new(model.to_string(), 0.0))
}
