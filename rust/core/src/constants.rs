// Twin: bus/constants.py (docs/parity.md)
//! Every key name, default and limit of the job bus. The Python twin is
//! `bus/constants.py`; `tests/vectors/keys.json` pins both.

/// Version of the JSON job messages written (`"v"`); 2 leaves out the
/// derivable `id` and `out` and every field at its default.
pub const PROTOCOL_VERSION: u32 = 2;
/// Job message versions a reader accepts (1 carried every field).
pub const READABLE_VERSIONS: [u32; 2] = [1, 2];
/// Text column of an input file unless a job names another.
pub const DEFAULT_COLUMN: &str = "text";
/// Prefix of every Redis key.
pub const DEFAULT_NAMESPACE: &str = "embedfleet";
/// Lane of a job the manager routed nowhere else.
pub const DEFAULT_LANE: &str = "default";
/// Consumer group on every lane stream.
pub const GROUP: &str = "workers";
/// Field of a stream entry that holds the JSON job message.
pub const JOB_FIELD: &str = "job";

// -- Key suffixes under the namespace (built by `keys.rs`) -----------------

/// STREAM of one lane's job messages.
pub const KEY_QUEUE: &str = "q:{lane}";
/// ZSET of one lane's retries, scored by due time in Redis ms.
pub const KEY_DELAYED: &str = "delayed:{lane}";
/// HASH job id -> state letter.
pub const KEY_STATE: &str = "state";
/// HASH of run counters, `STATS_COUNTERS`.
pub const KEY_STATS: &str = "stats";
/// STREAM of dead letters.
pub const KEY_DEAD: &str = "dead";
/// HASH job id -> last failure reason.
pub const KEY_ERRORS: &str = "errors";
/// HASH worker id -> JSON worker record.
pub const KEY_WORKERS: &str = "workers";
/// HASH worker id -> Redis ms of its last heartbeat.
pub const KEY_WORKERS_SEEN: &str = "workers:seen";
/// HASH of fleet controls (`paused`, `drain`).
pub const KEY_CONTROL: &str = "control";
/// STREAM of worker events (capped).
pub const KEY_EVENTS: &str = "events";
/// SET of lanes that ever received a job.
pub const KEY_LANES: &str = "lanes";
/// STRING: the manager's reconcile lock (a token, `SET NX PX`); the Rust
/// worker never takes it, but the key table is one table.
pub const KEY_LOCK_RECONCILE: &str = "lock:reconcile";
/// The reconcile lock expires by itself if its holder dies.
pub const RECONCILE_LOCK_MS: u64 = 300_000;
/// Every counter of the stats hash (`bus/constants.py` says what each counts).
pub const STATS_COUNTERS: [&str; 12] = [
    "enqueued",
    "queued",
    "done",
    "dead",
    "rows",
    "retried",
    "requeued",
    "duplicates",
    "skipped_existing",
    "lost_lease",
    "model_calls",
    "rows_reused",
];

// -- What a reader accepts (docs/protocol.md, "Invalid messages") ----------
// A message outside these bounds is dead-lettered with the reason
// `INVALID_MESSAGE: <what>: <detail>` (`wire.rs`).

/// Start of the dead-letter reason of every message a worker cannot read.
pub const INVALID_MESSAGE: &str = "invalid job message";
/// Longest job message read; a longer one is refused unread (`too large`).
pub const MAX_MESSAGE_BYTES: usize = 65_536;
/// Deepest nesting of arrays and objects in a message (serde_json's limit).
pub const MAX_JSON_DEPTH: usize = 127;
/// Longest part of a job path in UTF-8 bytes (NAME_MAX): a longer name can
/// never be opened (ENAMETOOLONG).
pub const MAX_NAME_BYTES: usize = 255;
/// Longest job path in UTF-8 bytes (PATH_MAX, 4096 with its NUL).
pub const MAX_PATH_BYTES: usize = 4_095;
/// Largest row number of a `rows` range (Parquet counts rows in int64).
pub const MAX_ROW: u64 = (1 << 63) - 1;
/// Largest `attempt`; the smallest is 1.
pub const MAX_ATTEMPT: u32 = (1 << 31) - 1;
/// State letters in the state hash.
pub const STATE_QUEUED: &str = "q";
pub const STATE_DONE: &str = "d";
pub const STATE_DEAD: &str = "x";
/// Lease: an entry idle for longer may be claimed by another worker.
pub const DEFAULT_LEASE_MS: u64 = 60_000;
/// Deliveries after which a job is dead-lettered instead of run again.
pub const DEFAULT_MAX_DELIVERIES: u32 = 5;
/// First retry backoff, doubled per attempt up to the maximum.
pub const DEFAULT_RETRY_BASE_MS: u64 = 2_000;
pub const DEFAULT_RETRY_MAX_MS: u64 = 60_000;
/// Approximate cap on the worker events stream.
pub const DEFAULT_EVENTS_MAXLEN: usize = 100_000;
/// Heartbeat period of a worker.
pub const DEFAULT_HEARTBEAT_MS: u64 = 5_000;
/// Files with more rows are split into row-range jobs.
pub const DEFAULT_ROWS_PER_PART: u64 = 200_000;
/// Embedding width of all-MiniLM-L6-v2.
pub const EMBEDDING_DIM: usize = 384;
/// Tokens per text, as sentence-transformers truncates.
pub const MAX_SEQ_LENGTH: usize = 256;
pub const MODEL_NAME: &str = "all-MiniLM-L6-v2";
pub const INPUT_DIR: &str = "chains";
pub const OUTPUT_DIR: &str = "embeddings";
/// Prefix of embedfleet's Parquet key-value metadata keys.
pub const META_PREFIX: &str = "embedfleet.";
pub const OUTPUT_FORMAT_VERSION: u32 = 1;

// -- Reuse store (docs/reuse.md): vectors computed once, reused fleet-wide --

/// STRING: the vector of one distinct text in one precision class (`cls`
/// `e` exact or `q` int8; `key` the 32 hex digits of the text key), as the
/// worker's `reuse::encode_entry` writes it. Built by `Keys::reuse_entry`.
pub const KEY_REUSE_ENTRY: &str = "r:{cls}:{key}";
/// STRING: worker id of the one worker computing that text in that class
/// now; expires after the claimant's job lease (`--lease-ms`;
/// `DEFAULT_REUSE_CLAIM_MS` where no lease is given).
pub const KEY_REUSE_CLAIM: &str = "r:p:{cls}:{key}";
/// STRING integer: bytes accounted to the store's entries (key, value and
/// `REUSE_ENTRY_OVERHEAD` each), checked against the ceiling.
pub const KEY_REUSE_BYTES: &str = "r:bytes";
/// STRING integer: the store's byte ceiling set by the manager;
/// `DEFAULT_REUSE_MAX_BYTES` when unset, 0 for none of ours.
pub const KEY_REUSE_MAX: &str = "r:max";
/// Precision class of fp32, bf16 and fp16 vectors (each within cosine 0.9999
/// of fp32): reusable by every worker.
pub const REUSE_CLASS_EXACT: &str = "e";
/// Precision class of int8 vectors: reusable only by int8 workers.
pub const REUSE_CLASS_INT8: &str = "q";
/// Ceiling of the store when the manager set none (about a million texts).
pub const DEFAULT_REUSE_MAX_BYTES: u64 = 1 << 30;
/// Bytes Redis spends on an entry besides its key and value.
pub const REUSE_ENTRY_OVERHEAD: u64 = 200;
/// Life of a claim: a worker that dies holding claims holds them up this long.
pub const DEFAULT_REUSE_CLAIM_MS: u64 = 60_000;
/// Texts a worker claims at once.
pub const REUSE_ROUND_TEXTS: usize = 512;
/// First byte of every entry; a reader ignores entries of another format.
pub const REUSE_ENTRY_FORMAT: u8 = 1;

// -- Worker events (docs/protocol.md, "Events"; tests/vectors/events.json) --

/// `v` of every event body.
pub const EVENT_VERSION: u32 = 1;
/// A worker joined: `device`, `lanes`, `version`.
pub const EVENT_WORKER_STARTED: &str = "worker_started";
/// A worker left cleanly: `rows`, `jobs`.
pub const EVENT_WORKER_STOPPED: &str = "worker_stopped";
/// A job completed: `rows`, `seconds`, `counts`.
pub const EVENT_JOB_DONE: &str = "job_done";
/// A job's output was already up to date: `rows`, `seconds`, `counts`.
pub const EVENT_JOB_SKIPPED: &str = "job_skipped";
/// A transient failure, retried: `error`, `attempt`, `delay_ms` (absent when
/// the watchdog gives the job back).
pub const EVENT_JOB_RETRY: &str = "job_retry";
/// A job dead-lettered: `error`, `attempts`.
pub const EVENT_JOB_DEAD: &str = "job_dead";
/// Another worker owns the job now; this one counted nothing.
pub const EVENT_LEASE_LOST: &str = "lease_lost";
/// Written by the manager's CLI: `action`, `detail`, `source`.
pub const EVENT_OPERATOR_ACTION: &str = "operator_action";
/// Every event type a worker (either kind) sends.
pub const WORKER_EVENT_TYPES: [&str; 7] = [
    EVENT_WORKER_STARTED,
    EVENT_WORKER_STOPPED,
    EVENT_JOB_DONE,
    EVENT_JOB_SKIPPED,
    EVENT_JOB_RETRY,
    EVENT_JOB_DEAD,
    EVENT_LEASE_LOST,
];
