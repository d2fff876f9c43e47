# Twin: rust/core/src/constants.rs (docs/parity.md)
"""Every key name, default and limit of the job bus, in one place.

The Rust twin is ``rust/core/src/constants.rs``; ``tests/vectors/keys.json``
pins both to the same values. ``docs/protocol.md`` explains how they are used.
"""

from __future__ import annotations

PROTOCOL_VERSION = 2
"""Version of the job messages written to the bus (``"v"`` field). Bumped on
any incompatible change; readers refuse versions they do not know. Version 2
leaves out the derivable ``id`` and ``out`` and every field at its default."""

READABLE_VERSIONS = (1, 2)
"""Job message versions a reader accepts (1 carried ``id``, ``out`` and every field)."""

DEFAULT_COLUMN = "text"
"""Text column of an input file unless a job names another."""

DEFAULT_NAMESPACE = "embedfleet"
"""Prefix of every Redis key, so that several fleets can share one Redis."""

DEFAULT_LANE = "default"
"""Lane of a job the manager did not route anywhere else."""

GROUP = "workers"
"""Consumer group name on every lane stream."""

# Key suffixes: the full key is f"{namespace}:{suffix}".
KEY_QUEUE = "q:{lane}"
"""STREAM of job messages for one lane (field ``job``: the JSON message)."""

KEY_STATE = "state"
"""HASH job_id -> state letter: ``q`` queued, ``d`` done, ``x`` dead."""

KEY_STATS = "stats"
"""HASH of run counters, ``STATS_COUNTERS``."""

STATS_COUNTERS = (
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
)
"""Every counter of the stats hash: jobs enqueued and now queued, done, dead
(``dead`` and ``queued`` are gauges the scripts move up and down), rows
embedded, retries scheduled, dead letters requeued by ``requeue-failed``,
duplicate completions, outputs found up to date, completions refused for a
lost lease, texts sent to the model, rows answered by the reuse store."""

KEY_DELAYED = "delayed:{lane}"
"""ZSET of one lane's job messages waiting for a retry; score = due time in
Redis milliseconds (``TIME``), so worker clocks never matter."""

KEY_DEAD = "dead"
"""STREAM of dead-lettered jobs (fields ``job``, ``reason``, ``attempts``,
``worker``)."""

KEY_ERRORS = "errors"
"""HASH job_id -> last failure reason, so that a job that finally dies after
crashing its workers still says why."""

KEY_WORKERS = "workers"
"""HASH worker_id -> JSON worker record (registry and heartbeat)."""

KEY_WORKERS_SEEN = "workers:seen"
"""HASH worker_id -> Redis time in ms of the worker's last heartbeat."""

KEY_CONTROL = "control"
"""HASH of fleet controls: ``paused`` and ``drain`` ("1" when set)."""

KEY_EVENTS = "events"
"""STREAM of worker events, capped; the manager journals them."""

KEY_LANES = "lanes"
"""SET of lane names that have ever received a job."""

KEY_LOCK_RECONCILE = "lock:reconcile"
"""STRING: a random token while the manager's reconcile pass runs (``SET NX
PX``, ``RECONCILE_LOCK_MS``), so two managers never reconcile at once; deleted
by its holder through ``unlock.lua``."""

RECONCILE_LOCK_MS = 300_000
"""The reconcile lock expires by itself if its holder dies."""

JOB_FIELD = "job"
"""Field of a stream entry holding the JSON job message."""

# -- What a reader accepts (docs/protocol.md, "Invalid messages") -------------
# A message outside these bounds is dead-lettered with the reason
# ``INVALID_MESSAGE + ": <what>: <detail>"`` (``bus/wire.py``).

INVALID_MESSAGE = "invalid job message"
"""Start of the dead-letter reason of every message a worker cannot read."""

MAX_MESSAGE_BYTES = 65_536
"""Longest job message read; a longer one is refused unread (``too large``).
Real messages are a few hundred bytes."""

MAX_JSON_DEPTH = 127
"""Deepest nesting of arrays and objects in a message (serde_json's limit)."""

MAX_NAME_BYTES = 255
"""Longest part of a job path in UTF-8 bytes (NAME_MAX of Linux and macOS
file systems): a longer name can never be opened (ENAMETOOLONG)."""

MAX_PATH_BYTES = 4_095
"""Longest job path in UTF-8 bytes (PATH_MAX, 4096 with its NUL)."""

MAX_ROW = 2**63 - 1
"""Largest row number of a ``rows`` range (Parquet counts rows in int64)."""

MAX_ATTEMPT = 2**31 - 1
"""Largest ``attempt``; the smallest is 1."""

LANE_PATTERN = r"[A-Za-z0-9_.-]{1,64}"
"""What a lane name may be (the manager's router checks the same)."""

STATE_QUEUED = "q"
STATE_DONE = "d"
STATE_DEAD = "x"

DEFAULT_LEASE_MS = 60_000
"""A pending entry idle for longer than this may be claimed by another worker.
A working worker renews its lease every ``lease / 3``."""

DEFAULT_MAX_DELIVERIES = 5
"""Deliveries of one job (crashes, lease expiries and retries together) after
which it is dead-lettered instead of run again."""

DEFAULT_RETRY_BASE_MS = 2_000
"""First retry backoff; doubled on each further attempt, capped below."""

DEFAULT_RETRY_MAX_MS = 60_000
"""Largest retry backoff."""

DEFAULT_EVENTS_MAXLEN = 100_000
"""Approximate cap on the worker events stream."""

DEFAULT_HEARTBEAT_MS = 5_000
"""How often a worker refreshes its registry record."""

DEFAULT_ROWS_PER_PART = 200_000
"""Files with more rows than this are split into row-range jobs (aligned to
row groups)."""

EMBEDDING_DIM = 384
"""Width of an all-MiniLM-L6-v2 embedding."""

MAX_SEQ_LENGTH = 256
"""Tokens per text, as sentence-transformers truncates (not the 128 of the
model's tokenizer.json)."""

MODEL_NAME = "all-MiniLM-L6-v2"
"""Model family name; the model id adds the weights hash."""

OUTPUT_DIR = "embeddings"
"""Output tree under the output root, mirroring ``chains/`` of the input."""

INPUT_DIR = "chains"
"""Input tree under the input root."""

META_PREFIX = "embedfleet."
"""Prefix of every Parquet key-value metadata key embedfleet writes."""

OUTPUT_FORMAT_VERSION = 1
"""Version of the output Parquet layout (columns and metadata keys)."""

# -- Reuse store (docs/reuse.md): vectors computed once, reused fleet-wide ----

KEY_REUSE_ENTRY = "r:{cls}:{key}"
"""STRING: the vector of one distinct text in one precision class (``cls``
``e`` exact or ``q`` int8; ``key`` the 32 hex digits of ``bus.textkey``),
encoded as ``bus.reuse.encode_entry`` writes it."""

KEY_REUSE_CLAIM = "r:p:{cls}:{key}"
"""STRING: worker id of the one worker computing that text in that class now;
expires after the claimant's job lease (``--lease-ms``; ``DEFAULT_REUSE_CLAIM_MS``
where no lease is given)."""

KEY_REUSE_BYTES = "r:bytes"
"""STRING integer: bytes accounted to the store's entries (key, value and
``REUSE_ENTRY_OVERHEAD`` each), checked against the ceiling."""

KEY_REUSE_MAX = "r:max"
"""STRING integer: the store's byte ceiling, set by the manager
(``--reuse-max-bytes``); ``DEFAULT_REUSE_MAX_BYTES`` when unset, 0 for none
of ours (a dedicated Redis whose own maxmemory policy evicts)."""

REUSE_CLASS_EXACT = "e"
"""Precision class of fp32, bf16 and fp16 vectors (each within cosine 0.9999
of fp32): one class, reusable by every worker."""

REUSE_CLASS_INT8 = "q"
"""Precision class of int8 vectors: reusable only by int8 workers."""

DEFAULT_REUSE_MAX_BYTES = 1 << 30
"""Ceiling of the store when the manager set none: about a million distinct
texts. Past it new vectors are not stored (the run goes on, recomputing)."""

REUSE_ENTRY_OVERHEAD = 200
"""Bytes Redis spends on an entry besides its key and value (dict entry,
object headers, allocator rounding of the 776-byte value): measured 1,025
bytes per entry in all on Redis 7 with a 47-byte key."""

DEFAULT_REUSE_CLAIM_MS = 60_000
"""Life of a claim: a worker that dies while computing claimed texts holds
them up this long at most; then another worker computes them."""

REUSE_ROUND_TEXTS = 512
"""Texts a worker claims at once. Small rounds let two workers holding the
same file share its texts instead of one waiting for the other."""

REUSE_ENTRY_FORMAT = 1
"""First byte of every entry; a reader ignores entries of another format."""

# -- Worker events (docs/protocol.md, "Events"; pinned by tests/vectors/events.json) --

EVENT_VERSION = 1
"""``v`` of every event body."""

EVENT_WORKER_STARTED = "worker_started"
"""A worker joined: ``device``, ``lanes``, ``version``."""

EVENT_WORKER_STOPPED = "worker_stopped"
"""A worker left cleanly: ``rows``, ``jobs``."""

EVENT_JOB_DONE = "job_done"
"""A job completed: ``rows``, ``seconds``, ``counts``."""

EVENT_JOB_SKIPPED = "job_skipped"
"""A job's output was already up to date: ``rows``, ``seconds``, ``counts``."""

EVENT_JOB_RETRY = "job_retry"
"""A transient failure, retried: ``error``, ``attempt``, ``delay_ms`` (absent
when the watchdog gives the job back)."""

EVENT_JOB_DEAD = "job_dead"
"""A job dead-lettered: ``error``, ``attempts``."""

EVENT_LEASE_LOST = "lease_lost"
"""Another worker owns the job now; this one counted nothing."""

EVENT_OPERATOR_ACTION = "operator_action"
"""Written by the manager's CLI: ``action``, ``detail``, ``source``."""

WORKER_EVENT_TYPES = (
    EVENT_WORKER_STARTED,
    EVENT_WORKER_STOPPED,
    EVENT_JOB_DONE,
    EVENT_JOB_SKIPPED,
    EVENT_JOB_RETRY,
    EVENT_JOB_DEAD,
    EVENT_LEASE_LOST,
)
"""Every event type a worker (either kind) sends."""
