"""Regenerate the protocol test vectors from the Python reference.

Run only when the protocol changes on purpose (and bump PROTOCOL_VERSION when
the change is incompatible): ``python -m tests.vectors.generate``. Both the
Python and the Rust test suites load these files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bus.constants import DEFAULT_NAMESPACE, INVALID_MESSAGE, REUSE_CLASS_EXACT, STATS_COUNTERS
from bus.errors import EmbedfleetError, InvalidMessage
from bus.keys import Keys
from bus.messages import Job, check_relative

HERE = Path(__file__).parent
MODEL = "all-MiniLM-L6-v2@53aa51172d142c89"
REUSE_KEY = bytes(range(16))
"""A text key (16 bytes) to show the reuse keys with."""

JOB_CASES = [
    dict(path="chains/2024-01/AskReddit/part-000.parquet", fingerprint="1048576-1700000000000000000", rows=None),
    dict(path="chains/2024-01/AskReddit/part-001.parquet", fingerprint="99-1", rows=(0, 50000)),
    dict(path="chains/2024-01/AskReddit/part-001.parquet", fingerprint="99-1", rows=(50000, 100000)),
    dict(path="chains/x/r/café ☕.parquet", fingerprint="10-20", rows=None, id_column="id", lane="gpu"),
    dict(path="chains/x/r/no_ext", fingerprint="10-20", rows=(5, 9), column="body"),
    dict(path="chains/x/r/.hidden.parquet", fingerprint="1-1", rows=(0, 1)),
]

PATHS = [
    ("chains/a/b/c.parquet", True),
    ("embeddings/a/b/c.parquet", True),
    ("/etc/passwd", False),
    ("chains/../../etc/passwd", False),
    ("chains/a/./c.parquet", False),
    ("chains//c.parquet", False),
    ("", False),
    ("chains\\a\\b.parquet", False),
    ("chains/a/b\u0000.parquet", False),
    ("chains/a/..hidden/c.parquet", True),
]

BAD_MESSAGES = [
    ("not json", "not JSON"),
    ("[1,2]", "object"),
    ('{"v":3,"path":"chains/a","fp":"1","model":"m"}', "version"),
    ('{"v":2,"fp":"1","model":"m"}', "field"),
    ('{"v":2,"path":"chains/a","model":"m"}', "field"),
    ('{"v":2,"path":"/abs","fp":"1","model":"m"}', "relative"),
    ('{"v":2,"path":"chains/../../x","fp":"1","model":"m"}', ".."),
    ('{"v":2,"path":"embeddings/a","fp":"1","model":"m"}', "chains/"),
    ('{"v":2,"path":"chains/a","rows":[9,3],"fp":"1","model":"m"}', "row range"),
]

# Hostile messages (hostile_messages.json): both suites put every one on a
# lane beside good jobs and run a burst worker, which must dead-letter each
# with a reason starting "invalid job message: <what>" (docs/protocol.md) and
# go on at full speed. "raw" is the stream field's value; "raw_hex" gives
# bytes that are not UTF-8 instead; "field" names the entry's field when it
# is not "job"; "pad_to_bytes" replaces "@PAD@" in raw with "x"s up to that
# many bytes (keeps the file small).
_GOOD = '{"v":2,"path":"chains/h/sub/x.parquet","fp":"1-1","model":"m"%s}'
_BAD_PATH = '{"v":2,"path":%s,"fp":"1-1","model":"m"}'
HOSTILE_MESSAGES: list[tuple[str, str, str, dict[str, object]]] = [
    ("not JSON", "not json", "not JSON", {}),
    ("empty", "", "not JSON", {}),
    ("trailing garbage", _GOOD % "" + "x", "not JSON", {}),
    ("NaN", _GOOD % ',"attempt":NaN', "not JSON", {}),
    ("number beyond a double", _GOOD % ',"attempt":1e400', "not JSON", {}),
    ("lone surrogate", _BAD_PATH % '"chains/h/sub/\\ud800.parquet"', "not JSON", {}),
    ("nested 200 deep", _GOOD % (',"x":' + "[" * 199 + "]" * 199), "not JSON", {}),
    ("not UTF-8", "", "not JSON", {"raw_hex": (_GOOD % "").encode().replace(b"x.parquet", b"\xff.parquet").hex()}),
    ("JSON array", "[1,2]", "not an object", {}),
    ("JSON string", '"chains/h/sub/x.parquet"', "not an object", {}),
    ("JSON null", "null", "not an object", {}),
    ("version 3", '{"v":3,"path":"chains/h/sub/x.parquet","fp":"1-1","model":"m"}', "unsupported version", {}),
    ("no version", '{"path":"chains/h/sub/x.parquet","fp":"1-1","model":"m"}', "unsupported version", {}),
    (
        "version as a string",
        '{"v":"2","path":"chains/h/sub/x.parquet","fp":"1-1","model":"m"}',
        "unsupported version",
        {},
    ),
    ("version 2.0", '{"v":2.0,"path":"chains/h/sub/x.parquet","fp":"1-1","model":"m"}', "unsupported version", {}),
    ("missing path", '{"v":2,"fp":"1-1","model":"m"}', "missing field path", {}),
    ("null path", _BAD_PATH % "null", "missing field path", {}),
    ("missing fp", '{"v":2,"path":"chains/h/sub/x.parquet","model":"m"}', "missing field fp", {}),
    ("model a number", '{"v":2,"path":"chains/h/sub/x.parquet","fp":"1-1","model":7}', "bad field model", {}),
    ("path with ..", _BAD_PATH % '"../../../../etc/passwd"', "unsafe path", {}),
    ("path with .. under chains", _BAD_PATH % '"chains/../../etc/passwd"', "unsafe path", {}),
    ("absolute path", _BAD_PATH % '"/etc/passwd"', "unsafe path", {}),
    ("path outside chains/", _BAD_PATH % '"embeddings/h/sub/x.parquet"', "unsafe path", {}),
    ("NUL in path", _BAD_PATH % '"chains/h/sub/x\\u0000.parquet"', "unsafe path", {}),
    ("backslash in path", _BAD_PATH % '"chains\\\\h\\\\x.parquet"', "unsafe path", {}),
    ("file name over 255 bytes", _BAD_PATH % f'"chains/h/sub/{"n" * 300}.parquet"', "path too long", {}),
    ("rows reversed", _GOOD % ',"rows":[5,2]', "bad field rows", {}),
    ("negative rows", _GOOD % ',"rows":[-1,5]', "bad field rows", {}),
    ("rows not a pair", _GOOD % ',"rows":[0,5,9]', "bad field rows", {}),
    ("rows as strings", _GOOD % ',"rows":["0","5"]', "bad field rows", {}),
    ("attempt -100", _GOOD % ',"attempt":-100', "bad field attempt", {}),
    ("attempt 0", _GOOD % ',"attempt":0', "bad field attempt", {}),
    ("attempt as a string", _GOOD % ',"attempt":"2"', "bad field attempt", {}),
    ("attempt 2.0", _GOOD % ',"attempt":2.0', "bad field attempt", {}),
    ("attempt true", _GOOD % ',"attempt":true', "bad field attempt", {}),
    ("huge attempt", _GOOD % ',"attempt":99999999999999999999', "bad field attempt", {}),
    ("attempt 2^31", _GOOD % ',"attempt":2147483648', "bad field attempt", {}),
    ("lane with a space and a colon", _GOOD % ',"lane":"gpu lane:1"', "bad field lane", {}),
    ("empty lane", _GOOD % ',"lane":""', "bad field lane", {}),
    ("empty column", _GOOD % ',"col":""', "bad field col", {}),
    ("id column a list", _GOOD % ',"idcol":["id"]', "bad field idcol", {}),
    ("no job field", _GOOD % "", "no job field", {"field": "jobs"}),
    ("1 MB message", _GOOD % ',"pad":"@PAD@"', "too large", {"pad_to_bytes": 1 << 20}),
]


def hostile_raw(case: dict[str, Any]) -> bytes:
    """The stream field value of a hostile_messages.json case."""
    if "raw_hex" in case:
        return bytes.fromhex(case["raw_hex"])
    raw = str(case["raw"]).encode("utf-8")
    if "pad_to_bytes" in case:
        raw = raw.replace(b"@PAD@", b"x" * (int(case["pad_to_bytes"]) - len(raw) + len(b"@PAD@")))
    return raw


def hostile_messages() -> list[dict[str, Any]]:
    out = []
    for name, raw, what, extra in HOSTILE_MESSAGES:
        case: dict[str, Any] = {"name": name, "raw": raw, **extra, "reason_starts_with": f"{INVALID_MESSAGE}: {what}"}
        if "field" not in case:  # the reference refuses it with that reason
            try:
                Job.from_json(hostile_raw(case))
                raise AssertionError(f"{name}: accepted")
            except InvalidMessage as e:
                assert str(e).startswith(case["reason_starts_with"]), (name, str(e))
        out.append(case)
    return out


# Bus scenarios: both suites run these step by step against a real Redis
# (lease_ms as given; "sleep" waits on the wall clock; "job" names refer to
# the "jobs" table; claim expects the job name or null).
SCENARIOS = [
    {
        "name": "idempotent enqueue and ownership-checked completion",
        "lease_ms": 60000,
        "jobs": {"a": 0, "b": 1},
        "steps": [
            {"op": "enqueue", "job": "a", "expect": 1},
            {"op": "enqueue", "job": "a", "expect": 0},
            {"op": "enqueue", "job": "b", "expect": 1},
            {"op": "claim", "consumer": "w1", "expect": "a", "deliveries": 1},
            {"op": "claim", "consumer": "w2", "expect": "b", "deliveries": 1},
            {"op": "complete", "consumer": "w2", "job": "a", "rows": 10, "expect": 0},
            {"op": "complete", "consumer": "w1", "job": "a", "rows": 10, "expect": 1},
            {"op": "complete", "consumer": "w1", "job": "a", "rows": 10, "expect": 0},
            {"op": "enqueue", "job": "a", "expect": 0},
            {"op": "complete", "consumer": "w2", "job": "b", "rows": 5, "expect": 1},
            {"op": "stats", "expect": {"enqueued": 2, "queued": 0, "done": 2, "rows": 15, "lost_lease": 2}},
            {"op": "state", "job": "a", "expect": "d"},
        ],
    },
    {
        "name": "expired lease taken over; the late owner cannot renew or complete",
        "lease_ms": 100,
        "jobs": {"a": 0},
        "steps": [
            {"op": "enqueue", "job": "a", "expect": 1},
            {"op": "claim", "consumer": "w1", "expect": "a", "deliveries": 1},
            {"op": "renew", "consumer": "w1", "job": "a", "expect": 1},
            {"op": "claim", "consumer": "w2", "expect": None},
            {"op": "sleep", "ms": 250},
            {"op": "claim", "consumer": "w2", "expect": "a", "deliveries": 2},
            {"op": "renew", "consumer": "w1", "job": "a", "expect": 0},
            {"op": "complete", "consumer": "w1", "job": "a", "rows": 3, "expect": 0},
            {"op": "complete", "consumer": "w2", "job": "a", "rows": 3, "expect": 1},
            {"op": "stats", "expect": {"done": 1, "queued": 0, "rows": 3, "lost_lease": 1}},
        ],
    },
    {
        "name": "duplicate entry of a done job is acknowledged, not counted",
        "lease_ms": 60000,
        "jobs": {"a": 0},
        "steps": [
            {"op": "enqueue", "job": "a", "expect": 1},
            {"op": "raw_add", "job": "a"},
            {"op": "claim", "consumer": "w1", "expect": "a", "deliveries": 1},
            {"op": "complete", "consumer": "w1", "job": "a", "rows": 7, "expect": 1},
            {"op": "claim", "consumer": "w1", "expect": "a", "deliveries": 1},
            {"op": "complete", "consumer": "w1", "job": "a", "rows": 7, "expect": 2},
            {"op": "stats", "expect": {"done": 1, "rows": 7, "duplicates": 1}},
        ],
    },
    {
        "name": "retry after backoff, then dead letter with reason",
        "lease_ms": 60000,
        "jobs": {"a": 2},
        "steps": [
            {"op": "enqueue", "job": "a", "expect": 1},
            {"op": "claim", "consumer": "w1", "expect": "a", "deliveries": 1},
            {"op": "retry", "consumer": "w1", "job": "a", "reason": "disk hiccup", "delay_ms": 200, "expect": 1},
            {"op": "claim", "consumer": "w1", "expect": None},
            {"op": "sleep", "ms": 1300},
            {"op": "claim", "consumer": "w1", "expect": "a", "deliveries": 1, "attempt": 2},
            {"op": "dead", "consumer": "w1", "job": "a", "reason": "corrupt parquet", "expect": 1},
            {"op": "state", "job": "a", "expect": "x"},
            {"op": "dead_reason", "job": "a", "expect": "corrupt parquet"},
            {"op": "stats", "expect": {"dead": 1, "queued": 0, "retried": 1}},
            {"op": "enqueue", "job": "a", "expect": 0},
        ],
    },
    {
        "name": "trim keeps pending and undelivered entries",
        "lease_ms": 60000,
        "jobs": {"a": 0, "b": 1, "c": 3},
        "steps": [
            {"op": "enqueue", "job": "a", "expect": 1},
            {"op": "enqueue", "job": "b", "expect": 1},
            {"op": "enqueue", "job": "c", "expect": 1},
            {"op": "claim", "consumer": "w1", "expect": "a", "deliveries": 1},
            {"op": "claim", "consumer": "w1", "expect": "b", "deliveries": 1},
            {"op": "complete", "consumer": "w1", "job": "b", "rows": 1, "expect": 1},
            {"op": "trim", "expect": 0},
            {"op": "complete", "consumer": "w1", "job": "a", "rows": 1, "expect": 1},
            {"op": "trim", "expect": 1},
            {"op": "stream_len", "expect": 2},
            {"op": "claim", "consumer": "w1", "expect": "c", "deliveries": 1},
        ],
    },
]


def job_case(i: int) -> Job:
    kw = dict(JOB_CASES[i])
    return Job.create(model=MODEL, **kw)  # type: ignore[arg-type]


def v1_json(job: Job) -> str:
    """The job as protocol version 1 wrote it (every field, ``out`` included):
    readers still accept it, so a queue left by an older manager drains."""
    d = {"v": 1, "id": job.id, "path": job.path, "out": job.out, "rows": list(job.rows) if job.rows else None,
         "fp": job.fingerprint, "model": job.model, "col": job.column, "idcol": job.id_column, "lane": job.lane,
         "attempt": job.attempt}  # fmt: skip
    return json.dumps(d, separators=(",", ":"), ensure_ascii=False)


def main() -> None:
    jobs = []
    for kw in JOB_CASES:
        job = Job.create(model=MODEL, **kw)  # type: ignore[arg-type]
        jobs.append(
            {
                "input": {**kw, "rows": list(kw["rows"]) if kw.get("rows") else None, "model": MODEL},
                "id": job.id,
                "out": job.out,
                "json": job.to_json(),
                "retry_json": job.next_attempt().to_json(),
                "v1_json": v1_json(job),
            }
        )
    paths = []
    for p, ok in PATHS:
        try:
            check_relative(p)
            got = True
        except EmbedfleetError:
            got = False
        assert got == ok, p
        paths.append({"path": p, "ok": ok})
    k = Keys(DEFAULT_NAMESPACE)
    keys = {
        "namespace": DEFAULT_NAMESPACE,
        "lane": "gpu",
        "queue": k.queue("gpu"),
        "delayed": k.delayed("gpu"),
        "state": k.state,
        "stats": k.stats,
        "dead": k.dead,
        "errors": k.errors,
        "workers": k.workers,
        "workers_seen": k.workers_seen,
        "control": k.control,
        "events": k.events,
        "lanes": k.lanes,
        "lock_reconcile": k.lock_reconcile,
        "reuse_class": REUSE_CLASS_EXACT,
        "reuse_key_hex": REUSE_KEY.hex(),
        "reuse_entry": k.reuse_entry(REUSE_CLASS_EXACT, REUSE_KEY),
        "reuse_claim": k.reuse_claim(REUSE_CLASS_EXACT, REUSE_KEY),
        "reuse_bytes": k.reuse_bytes,
        "reuse_max": k.reuse_max,
        "stats_counters": list(STATS_COUNTERS),
    }
    out = {
        "jobs.json": jobs,
        "paths.json": paths,
        "keys.json": keys,
        "bad_messages.json": [{"raw": r, "error_contains": e} for r, e in BAD_MESSAGES],
        "hostile_messages.json": hostile_messages(),
        "scenarios.json": SCENARIOS,
    }
    for name, data in out.items():
        (HERE / name).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
