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
