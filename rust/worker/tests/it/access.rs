//! The worker binary against a redis-server that refuses it: a wrong
//! password (WRONGPASS), none (NOAUTH), an ACL user without the keys it needs
//! (NOPERM). Each is permanent: the worker exits `EXIT_ACCESS_DENIED` within
//! seconds with one line naming what failed and where, and the password
//! appears nowhere (the Python suite checks its worker the same way,
//! `tests/test_worker_access.py`).

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use embedfleet_worker::model::MANIFEST;
use embedfleet_worker::supervision::EXIT_ACCESS_DENIED;

const PASSWORD: &str = "right-Pa55word-4-bus";
const WRONG: &str = "wr0ng-Pa55word-never-shown";
const LIMITED: &str = "limited-Pa55word-never-shown";
/// Before: retried every 10 s, forever.
const EXIT_WITHIN: Duration = Duration::from_secs(60);

/// A private redis-server with a password and a user that may touch no bus
/// key; killed when dropped, a failed assertion included.
struct LockedRedis {
    port: u16,
    child: Child,
    dir: PathBuf,
}

impl LockedRedis {
    fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("ef-locked-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .args(["--dir", dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is not installed: run `make setup`");
        let server = LockedRedis { port, child, dir };
        let client = redis::Client::open(format!("redis://127.0.0.1:{port}/0")).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut conn = loop {
            match client.get_connection() {
                Ok(c) => break c,
                Err(e) if Instant::now() < deadline => {
                    let _ = e;
                    std::thread::sleep(Duration::from_millis(25));
                }
                Err(e) => panic!("redis-server did not start on port {port}: {e}"),
            }
        };
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("limited")
            .arg("on")
            .arg(format!(">{LIMITED}"))
            .arg("~other:*")
            .arg("+@all")
            .query::<()>(&mut conn)
            .unwrap();
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("requirepass")
            .arg(PASSWORD)
            .query::<()>(&mut conn)
            .unwrap();
        server
    }
}

impl Drop for LockedRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A model directory the `--embedder hash` stand-in accepts (it reads only
/// the manifest, for the model id).
fn stand_in_model(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let manifest = serde_json::json!({
        "weights_sha256": "0".repeat(64), "embedding_dim": 384, "inputs": ["input_ids"],
        "output": "sentence_embedding", "tokenizer": "tokenizer.json", "variants": {},
    });
    std::fs::write(dir.join(MANIFEST), manifest.to_string()).unwrap();
}

/// Run the worker binary until it exits (at most `EXIT_WITHIN`): status and
/// stderr, stdout appended.
fn run_worker(url: &str, env_password: Option<&str>, dir: &Path) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_embedfleet-worker"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("EMBEDFLEET_")) {
        cmd.env_remove(k);
    }
    if let Some(pw) = env_password {
        cmd.env("EMBEDFLEET_REDIS_PASSWORD", pw);
    }
    let data = dir.join("data");
    std::fs::create_dir_all(&data).unwrap();
    let mut child = cmd
        .args([
            "--redis-url",
            url,
            "--namespace",
            "eft-access",
            "--embedder",
            "hash",
        ])
        .arg("--data-root")
        .arg(&data)
        .arg("--model-dir")
        .arg(dir.join("model"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + EXIT_WITHIN;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the worker did not exit within {EXIT_WITHIN:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let all = format!("{stderr}{}", String::from_utf8_lossy(&out.stdout));
    (out.status.code().unwrap_or(-1), stderr, all)
}

#[test]
fn a_refused_worker_exits_at_once_with_one_line_and_no_password() {
    let redis = LockedRedis::start();
    let port = redis.port;
    let dir = redis.dir.join("worker");
    stand_in_model(&dir.join("model"));
    let cases = [
        // (case, url, password from the environment, masked user, what failed)
        (
            "wrong password",
            format!("redis://:{WRONG}@127.0.0.1:{port}/0"),
            None,
            Some(""),
            "authentication failed",
        ),
        (
            "wrong password from the environment",
            format!("redis://127.0.0.1:{port}/0"),
            Some(WRONG),
            Some(""),
            "authentication failed",
        ),
        (
            "no password",
            format!("redis://127.0.0.1:{port}/0"),
            None,
            None,
            "authentication required",
        ),
        (
            "user without the bus keys",
            format!("redis://limited:{LIMITED}@127.0.0.1:{port}/0"),
            None,
            Some("limited"),
            "permission denied",
        ),
    ];
    for (case, url, env_password, user, what) in cases {
        let (code, stderr, all) = run_worker(&url, env_password, &dir);
        assert_eq!(code, EXIT_ACCESS_DENIED, "{case}: {all}");
        for secret in [WRONG, LIMITED, PASSWORD] {
            assert!(
                !all.contains(secret),
                "{case}: the password was printed: {all}"
            );
        }
        let problems: Vec<&str> = stderr.lines().filter(|l| !l.contains(" INFO ")).collect();
        assert_eq!(problems.len(), 1, "{case}: {all}");
        let masked = user.map(|u| format!("{u}:***@")).unwrap_or_default();
        let want = format!("Redis at redis://{masked}127.0.0.1:{port}/0 refused access: {what}");
        assert!(
            problems[0].contains(&want),
            "{case}: {:?} does not say {want:?}",
            problems[0]
        );
    }
}
