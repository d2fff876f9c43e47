// Twin: workers/mps/__main__.py (docs/parity.md)
//! The command line: the flags shared with the Python worker
//! (`python -m workers.mps`) plus the model flags of this one, and the
//! assembly of a `Worker` from them.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use embedfleet_core::constants::{
    DEFAULT_LANE, DEFAULT_LEASE_MS, DEFAULT_MAX_DELIVERIES, DEFAULT_NAMESPACE,
};

use crate::batching::{Embedder, OnnxEmbedder, CPU_TOKEN_BUDGET, CUDA_TOKEN_BUDGET};
use crate::bus::RedisBus;
use crate::error::{Result, WorkerError};
use crate::limits::{cap_open_files, parse_size, MemoryBudget};
use crate::locate::find_model_dir;
use crate::model::{Device, ModelDir, OnnxModel, Precision};
use crate::output::Provenance;
use crate::paths::DataRoots;
use crate::pipeline::{Pipeline, DEFAULT_CHUNK_ROWS};
use crate::reuse::{RedisReuseStore, ReuseStore};
use crate::runtime::{Worker, WorkerConfig};
use crate::settings::{switched_off, RedisSettings, ENV_REUSE, ENV_REUSE_URL};
use crate::stand_in::{HashEmbedder, SimulatedEmbedder};
use crate::tokenize::TextTokenizer;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Cuda,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EmbedderArg {
    /// all-MiniLM-L6-v2 through ONNX Runtime
    Onnx,
    /// Deterministic stand-in with no model, for bus tests and benchmarks
    Hash,
    /// The real tokenizer and batching on a simulated device (data-path benchmarks)
    Simulated,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum PrecisionArg {
    Fp32,
    Int8,
}

/// Claim embedding jobs from Redis and embed them with ONNX Runtime.
///
/// Exit status: 0 after a clean stop (signal, drain, burst), 2 for bad
/// arguments or set-up, 3 when a job ran past --job-timeout, 128+N after a
/// second signal N.
#[derive(Debug, Parser)]
#[command(name = "embedfleet-worker", version, about, long_about = None)]
pub struct Args {
    /// Redis URL (redis://[:password@]host:port/db or unix:///path)
    #[arg(long, env = "EMBEDFLEET_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,
    /// Key prefix of the fleet
    #[arg(long, env = "EMBEDFLEET_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub namespace: String,
    /// Input and output root at once (env EMBEDFLEET_DATA_ROOT)
    #[arg(long, value_name = "DIR")]
    pub data_root: Option<PathBuf>,
    /// Where this machine mounts the input root, holding chains/ (env
    /// EMBEDFLEET_INPUT_ROOT; default: the data root)
    #[arg(long, visible_alias = "input", value_name = "DIR")]
    pub input_root: Option<PathBuf>,
    /// Where this machine mounts the output root, holding embeddings/ (env
    /// EMBEDFLEET_OUTPUT_ROOT; default: the data root)
    #[arg(long, visible_alias = "output", value_name = "DIR")]
    pub output_root: Option<PathBuf>,
    /// Lanes to consume, in priority order (e.g. gpu,default)
    #[arg(long, default_value = DEFAULT_LANE)]
    pub lanes: String,
    /// Worker id (default: rust-<host>-<pid>)
    #[arg(long)]
    pub worker_id: Option<String>,
    /// Lease in ms: an entry idle for longer may be taken over
    #[arg(long, default_value_t = DEFAULT_LEASE_MS)]
    pub lease_ms: u64,
    /// Deliveries of a job after which it is dead-lettered
    #[arg(long, default_value_t = u64::from(DEFAULT_MAX_DELIVERIES))]
    pub max_deliveries: u64,
    /// Seconds; a job past it makes the worker exit 3
    #[arg(long)]
    pub job_timeout: Option<f64>,
    /// Exit 0 once the lanes are empty and nothing is pending or delayed
    #[arg(long)]
    pub burst: bool,
    /// Memory ceiling, e.g. 4G: shrink batches or refuse a part
    #[arg(long)]
    pub max_memory: Option<String>,
    /// Cap on open file descriptors
    #[arg(long)]
    pub max_open_files: Option<u64>,
    /// DEBUG, INFO, WARNING or ERROR
    #[arg(long, default_value = "INFO")]
    pub log_level: String,
    /// ONNX model directory (default: models/onnx/minilm, else model/ beside or above the binary, else the export of the clone it was built from)
    #[arg(long, env = "EMBEDFLEET_MODEL_DIR")]
    pub model_dir: Option<PathBuf>,
    /// ONNX Runtime intra-op threads (default: all cores)
    #[arg(long)]
    pub threads: Option<usize>,
    /// Model precision; int8 runs the int8-weight variant on a CPU with VNNI
    /// when the export has one, else the portable uint8-weight variant
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: PrecisionArg,
    /// Execution provider; cuda fails at start-up when CUDA is unavailable
    #[arg(long, value_enum, default_value = "cpu")]
    pub device: DeviceArg,
    /// Tokens per batch (texts are length-sorted, then cut under this
    /// budget); default 2048 on a CPU, 8192 on CUDA
    #[arg(long)]
    pub batch_tokens: Option<usize>,
    /// Rows read and embedded at a time
    #[arg(long, default_value_t = DEFAULT_CHUNK_ROWS)]
    pub chunk_rows: usize,
    /// onnx: the model; hash: a stand-in with no model (bus tests, benchmarks)
    #[arg(long, value_enum, default_value = "onnx")]
    pub embedder: EmbedderArg,
    /// Simulated model cost of --embedder hash
    #[arg(long, default_value_t = 0.0)]
    pub hash_seconds_per_row: f64,
    /// --embedder simulated: device microseconds per padded token
    #[arg(long, default_value_t = 0.0)]
    pub sim_us_per_token: f64,
    /// --embedder simulated: device speed in rows/s (overrides
    /// --sim-us-per-token; 0: a zero-cost device)
    #[arg(long, default_value_t = 0.0)]
    pub sim_rows_per_second: f64,
    /// Do not use the fleet's reuse store (no look-ups, claims or writes:
    /// each job deduplicates within itself only). EMBEDFLEET_REUSE=0 does
    /// the same
    #[arg(long)]
    pub no_reuse: bool,
    /// Redis of the reuse store, where vectors computed once are shared by
    /// the fleet (default: the bus's Redis; same URL and password rules as
    /// --redis-url)
    #[arg(long, env = ENV_REUSE_URL, hide_env_values = true)]
    pub reuse_url: Option<String>,
}

fn usage(msg: impl Into<String>) -> WorkerError {
    WorkerError::Usage(msg.into())
}

/// The host name (for the worker id and the registry).
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates or truncates.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    if ok && end > 0 {
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".into()
    }
}

/// The storage roots' environment variables, as every role reads them
/// (`bus/cli_options.py`).
pub const ENV_DATA_ROOT: &str = "EMBEDFLEET_DATA_ROOT";
pub const ENV_INPUT_ROOT: &str = "EMBEDFLEET_INPUT_ROOT";
pub const ENV_OUTPUT_ROOT: &str = "EMBEDFLEET_OUTPUT_ROOT";

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The input and output roots: a flag wins over every variable
/// (`--input-root`, then `--data-root`); a root no flag names comes from
/// `EMBEDFLEET_INPUT_ROOT`/`EMBEDFLEET_OUTPUT_ROOT`, then `EMBEDFLEET_DATA_ROOT`.
pub fn resolve_roots(a: &Args) -> (Option<PathBuf>, Option<PathBuf>) {
    let pick = |flag: &Option<PathBuf>, env: &str| {
        flag.clone()
            .or_else(|| a.data_root.clone())
            .or_else(|| env_path(env))
            .or_else(|| env_path(ENV_DATA_ROOT))
    };
    (
        pick(&a.input_root, ENV_INPUT_ROOT),
        pick(&a.output_root, ENV_OUTPUT_ROOT),
    )
}

fn data_roots(a: &Args) -> Result<DataRoots> {
    let (inp, out) = match resolve_roots(a) {
        (Some(i), Some(o)) => (i, o),
        _ => return Err(usage(
            "give --data-root (or EMBEDFLEET_DATA_ROOT), or both --input-root and --output-root",
        )),
    };
    let (inp, out) = (&inp, &out);
    if !inp.is_dir() {
        return Err(usage(format!(
            "input root {} is not a directory",
            inp.display()
        )));
    }
    std::fs::create_dir_all(out)
        .map_err(|e| usage(format!("cannot create output root {}: {e}", out.display())))?;
    Ok(DataRoots::new(inp, out))
}

fn embedder(a: &Args, memory: MemoryBudget) -> Result<Box<dyn Embedder>> {
    let dir = ModelDir::open(&find_model_dir(a.model_dir.as_deref())?)?;
    if a.embedder == EmbedderArg::Hash {
        return Ok(Box::new(HashEmbedder::new(
            dir.model_id(),
            a.hash_seconds_per_row.max(0.0),
        )));
    }
    if a.embedder == EmbedderArg::Simulated {
        return Ok(Box::new(SimulatedEmbedder::new(
            dir.model_id(),
            TextTokenizer::load(&dir.tokenizer_path())?,
            a.sim_us_per_token,
            a.sim_rows_per_second,
            a.batch_tokens,
        )));
    }
    let threads = a
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let precision = match a.precision {
        PrecisionArg::Fp32 => Precision::Fp32,
        PrecisionArg::Int8 => Precision::Int8,
    };
    let device = match a.device {
        DeviceArg::Cpu => Device::Cpu,
        DeviceArg::Cuda => Device::Cuda,
    };
    let tokenizer = TextTokenizer::load(&dir.tokenizer_path())?;
    let model = OnnxModel::load(&dir, precision, device, threads)?;
    Ok(Box::new(OnnxEmbedder::new(
        tokenizer,
        model,
        dir.model_id(),
        a.batch_tokens.unwrap_or(match device {
            Device::Cpu => CPU_TOKEN_BUDGET,
            Device::Cuda => CUDA_TOKEN_BUDGET,
        }),
        memory,
    )))
}

/// The reuse store, unless `--no-reuse` or `EMBEDFLEET_REUSE=0`: in the
/// Redis of `--reuse-url`, else the bus's, under the fleet's namespace.
pub fn reuse_store(a: &Args, bus: &RedisSettings) -> Result<Option<Box<dyn ReuseStore>>> {
    let env_off = std::env::var(ENV_REUSE).is_ok_and(|v| switched_off(&v));
    if a.no_reuse || env_off {
        log::info!("reuse store: off");
        return Ok(None);
    }
    let settings = match a.reuse_url.as_deref().filter(|u| !u.is_empty()) {
        Some(url) => RedisSettings::from_url(url, Some(&a.namespace))?,
        None => bus.clone(),
    };
    log::info!("reuse store: Redis {}", settings.redacted());
    // Claims last one job lease: a worker killed while it holds claims holds
    // up the texts no longer than it holds up its job.
    Ok(Some(Box::new(
        RedisReuseStore::new(settings).with_claim_ms(a.lease_ms),
    )))
}

/// Everything a worker needs, from the flags; `Usage` errors exit 2.
pub fn build(a: &Args, stop: Arc<AtomicBool>) -> Result<Worker> {
    let lanes: Vec<String> = a
        .lanes
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if lanes.is_empty() {
        return Err(usage("--lanes names no lane"));
    }
    if let Some(n) = a.max_open_files {
        cap_open_files(n)?;
    }
    let memory = MemoryBudget::new(a.max_memory.as_deref().map(parse_size).transpose()?);
    let roots = data_roots(a)?;
    let url = a
        .redis_url
        .as_deref()
        .ok_or_else(|| usage("no Redis URL: pass --redis-url or set EMBEDFLEET_REDIS_URL"))?;
    let settings = RedisSettings::from_url(url, Some(&a.namespace))?;
    let reuse = reuse_store(a, &settings)?;
    let embedder = embedder(a, memory)?;
    let host = hostname();
    let worker_id = a
        .worker_id
        .clone()
        .unwrap_or_else(|| format!("{}-{host}-{}", crate::KIND, std::process::id()));
    log::info!(
        "embedfleet {} worker {worker_id}: Redis {}, namespace {}, model {} on {} ({})",
        crate::VERSION,
        settings.redacted(),
        settings.namespace,
        embedder.model_id(),
        embedder.device(),
        embedder.precision()
    );
    let provenance = Provenance {
        worker_id: worker_id.clone(),
        worker_kind: crate::KIND.into(),
        device: embedder.device().into(),
        precision: embedder.precision().into(),
        software_version: crate::VERSION.into(),
    };
    let mut cfg = WorkerConfig::new(worker_id, host, lanes);
    cfg.lease_ms = a.lease_ms;
    cfg.max_deliveries = a.max_deliveries;
    cfg.job_timeout = a
        .job_timeout
        .filter(|t| *t > 0.0)
        .map(Duration::from_secs_f64);
    cfg.burst = a.burst;
    cfg.device = embedder.device().into();
    cfg.extra = BTreeMap::from([
        ("precision".to_string(), embedder.precision().to_string()),
        ("model".to_string(), embedder.model_id().to_string()),
    ]);
    let pipeline = Pipeline {
        roots,
        embedder,
        provenance,
        memory,
        chunk_rows: a.chunk_rows.max(1),
        reuse,
    };
    let bus = RedisBus::new(settings, a.lease_ms);
    Ok(Worker::new(bus, pipeline, cfg, stop))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Args {
        Args::try_parse_from(std::iter::once("embedfleet-worker").chain(argv.iter().copied()))
            .expect("flags parse")
    }

    #[test]
    fn input_and_output_are_aliases_of_the_root_flags() {
        let a = parse(&["--input", "/in", "--output", "/out"]);
        assert_eq!(a.input_root, Some(PathBuf::from("/in")));
        assert_eq!(a.output_root, Some(PathBuf::from("/out")));
        let b = parse(&["--input-root", "/in", "--output-root", "/out"]);
        assert_eq!((b.input_root, b.output_root), (a.input_root, a.output_root));
    }

    #[test]
    fn a_root_flag_wins_over_the_data_root_flag() {
        let a = parse(&["--data-root", "/data", "--input-root", "/in"]);
        assert_eq!(
            resolve_roots(&a),
            (Some(PathBuf::from("/in")), Some(PathBuf::from("/data")))
        );
    }
}
