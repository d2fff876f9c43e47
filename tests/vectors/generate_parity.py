"""Regenerate the worker-parity vectors (``docs/parity.md``): ``events.json``,
``cleaning.json``, ``batching.json`` and ``backoff.json``.

The expected values are computed here from the rules as ``docs/protocol.md``
and ``docs/parity.md`` state them, written out independently of either
worker, so a change to one worker's rule fails that worker's suite instead of
silently moving the vector::

    python -m tests.vectors.generate_parity
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent

# -- events -------------------------------------------------------------------

EVENTS: dict[str, Any] = {
    "v": 1,
    "common": ["v", "type", "worker", "kind", "ts_ms", "eid"],
    "about_job": ["job", "path"],
    "worker_types": {
        "worker_started": {"about_job": False, "fields": ["device", "lanes", "version"], "optional": []},
        "worker_stopped": {"about_job": False, "fields": ["rows", "jobs"], "optional": []},
        "job_done": {"about_job": True, "fields": ["rows", "seconds", "counts"], "optional": []},
        "job_skipped": {"about_job": True, "fields": ["rows", "seconds", "counts"], "optional": []},
        "job_retry": {"about_job": True, "fields": ["error", "attempt"], "optional": ["delay_ms"]},
        "job_dead": {"about_job": True, "fields": ["error", "attempts"], "optional": []},
        "lease_lost": {"about_job": True, "fields": [], "optional": []},
    },
    "manager_types": {
        "operator_action": {"about_job": False, "fields": ["action", "detail", "source"], "optional": []},
    },
    "counts": [
        "rows_total",
        "rows_embedded",
        "rows_null",
        "rows_empty",
        "rows_invalid_utf8",
        "rows_truncated",
        "rows_deduplicated",
        "model_calls",
        "rows_reused",
        "rows_exact",
        "rows_int8",
    ],
}

# -- cleaning -----------------------------------------------------------------
# A cell is {"null": true}, {"text": s} or {"bytes_hex": h}; "repeat": n
# repeats its text n times (so a long text stays a short vector).

_WS = " \t\n\r\x0b\x0c\x1c\x1d\x1e\x1f\x85\xa0\u1680\u2000\u200a\u2028\u2029\u202f\u205f\u3000"


def _cell_value(cell: dict[str, Any]) -> str | bytes | None:
    if cell.get("null"):
        return None
    if "bytes_hex" in cell:
        return bytes.fromhex(cell["bytes_hex"]) * int(cell.get("repeat", 1))
    return str(cell["text"]) * int(cell.get("repeat", 1))


def _clean_reference(cells: list[dict[str, Any]]) -> dict[str, Any]:
    """The cleaning rule of docs/protocol.md ("Output") and workers/README.md."""
    counts = {"rows_total": len(cells), "rows_embedded": 0, "rows_null": 0, "rows_empty": 0, "rows_invalid_utf8": 0}
    positions: list[int] = []
    texts: list[dict[str, Any]] = []
    for i, cell in enumerate(cells):
        value = _cell_value(cell)
        if value is None:
            counts["rows_null"] += 1
            continue
        if isinstance(value, bytes):
            try:
                value = value.decode("utf-8")
            except UnicodeDecodeError:
                value = value.decode("utf-8", errors="replace")
                counts["rows_invalid_utf8"] += 1
        if all(ch in _WS for ch in value):
            counts["rows_empty"] += 1
        positions.append(i)
        if "repeat" in cell and not isinstance(_cell_value(cell), bytes):
            texts.append({"text": cell["text"], "repeat": cell["repeat"]})
        else:
            texts.append({"text": value})
    counts["rows_embedded"] = len(positions)
    return {"positions": positions, "texts": texts, "counts": counts}


CLEANING_CASES: list[tuple[str, list[dict[str, Any]]]] = [
    ("plain text", [{"text": "hello world"}]),
    ("null rows are skipped", [{"null": True}, {"text": "a"}, {"null": True}]),
    ("empty string is embedded and counted", [{"text": ""}]),
    ("ascii whitespace is blank", [{"text": " "}, {"text": "\t\n\r"}, {"text": "\x0b\x0c"}]),
    ("unicode whitespace is blank", [{"text": "\xa0"}, {"text": "\u3000"}, {"text": "\u2028\u2029"}, {"text": "\x85"}]),
    ("ascii separators count as blank (python str.strip)", [{"text": "\x1c\x1d\x1e\x1f"}]),
    ("zero-width space is not blank", [{"text": "\u200b"}, {"text": "\u180e"}, {"text": "\ufeff"}]),
    ("text around whitespace is kept as is", [{"text": "  padded  "}]),
    ("valid utf-8 bytes are not invalid", [{"bytes_hex": "6f6b"}, {"bytes_hex": "636166c3a9"}]),
    ("empty bytes are blank, not invalid", [{"bytes_hex": ""}]),
    ("blank bytes", [{"bytes_hex": "2009"}]),
    ("a stray byte is replaced", [{"bytes_hex": "6261642000ff2062797465"}]),
    ("a lone surrogate's bytes become three replacements", [{"bytes_hex": "eda080"}]),
    ("an overlong encoding", [{"bytes_hex": "c0af"}]),
    ("a truncated sequence", [{"bytes_hex": "41e282"}]),
    ("a lone invalid byte is not blank", [{"bytes_hex": "ff"}]),
    ("NUL is a character, not blank", [{"text": "\x00"}]),
    ("a long text is kept whole", [{"text": "word ", "repeat": 40_000}]),
    ("long invalid bytes", [{"bytes_hex": "61ff", "repeat": 30_000}]),
    (
        "a mixed chunk",
        [{"null": True}, {"text": "x"}, {"text": ""}, {"bytes_hex": "ff"}, {"null": True}, {"text": "\u3000y"}],
    ),
]


def cleaning() -> list[dict[str, Any]]:
    out = []
    for name, cells in CLEANING_CASES:
        expected = _clean_reference(cells)
        for cell, text in zip(
            [c for c in cells if not c.get("null")], expected["texts"], strict=True
        ):  # long bytes: give the decoded text as a repeat of the decoded unit
            if "bytes_hex" in cell and "repeat" in cell:
                unit = bytes.fromhex(cell["bytes_hex"]).decode("utf-8", errors="replace")
                text.clear()
                text.update(text=unit, repeat=cell["repeat"])
        out.append({"name": name, "cells": cells, **expected})
    return out


# -- the batch cut rule -------------------------------------------------------

MAX_PADDING = 0.2
PADDING_SLACK = 256


def plan_batches(lengths: list[int], max_batch: int, budget: int) -> list[list[int]]:
    """Longest first (ties in input order); a batch holds as many texts as fit
    ``budget`` tokens at its longest length (at least one, at most
    ``max_batch``) and ends before a text whose addition would make padding
    exceed ``max(MAX_PADDING * padded tokens, PADDING_SLACK)``."""
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches, pos = [], 0
    while pos < len(order):
        seq = lengths[order[pos]]
        limit = min(max_batch, max(1, budget // seq), len(order) - pos)
        count, real = 1, seq
        while count < limit:
            nxt = lengths[order[pos + count]]
            padding = seq * (count + 1) - (real + nxt)
            if padding > max(MAX_PADDING * seq * (count + 1), PADDING_SLACK):
                break
            count, real = count + 1, real + nxt
        batches.append(order[pos : pos + count])
        pos += count
    return batches


def _batching_cases() -> list[tuple[str, list[int], int, int]]:
    rng = random.Random(20)
    realistic = [min(256, max(3, int(rng.lognormvariate(3.3, 0.9)))) for _ in range(300)]
    return [
        ("one text", [17], 4096, 1024),
        ("sorted longest first, ties in input order", [3, 200, 10, 200, 50, 7], 400, 1024),
        ("the budget caps a batch", [100] * 10, 350, 1024),
        ("max_batch caps a batch", [5] * 10, 4096, 4),
        ("a text over the budget still gets a batch", [300, 300], 10, 1024),
        ("long texts, then the short ones (padding rule)", [256] * 10 + [10] * 100, 1 << 20, 1024),
        ("padding within the slack is allowed", [256, 2], 4096, 1024),
        ("padding just past the slack and the fifth cuts", [256, 256, 256, 256, 256, 256, 1, 1], 1 << 20, 1024),
        ("padding at exactly a fifth is allowed, past it cuts", [200] * 6 + [100] * 5, 1 << 20, 1024),
        ("equal lengths never pad", [64] * 100, 4096, 1024),
        ("a realistic job (seeded log-normal lengths)", realistic, 4096, 1024),
        ("a realistic job on a GPU budget", realistic, 1 << 18, 4096),
    ]


def batching() -> dict[str, Any]:
    cases = [
        {"name": n, "lengths": ls, "budget": b, "max_batch": m, "batches": plan_batches(ls, m, b)}
        for n, ls, b, m in _batching_cases()
    ]
    return {"max_padding": MAX_PADDING, "padding_slack": PADDING_SLACK, "cases": cases}


# -- retry backoff ------------------------------------------------------------


def backoff() -> dict[str, Any]:
    """Delay before the next attempt: ``base * 2^(attempts-1)``, at most ``max``.
    No jitter today, so each range is one value; a worker that adds jitter
    must stay inside ``[min_ms, max_ms]``."""
    configs = []
    for base, cap, attempts in ((2_000, 60_000, [1, 2, 3, 4, 5, 6, 7, 10, 40, 100]), (10, 25, [1, 2, 3, 4])):
        cases = []
        for a in attempts:
            d = min(cap, base * 2 ** max(0, a - 1))
            cases.append({"attempts": a, "min_ms": d, "max_ms": d})
        configs.append({"base_ms": base, "max_ms": cap, "cases": cases})
    return {"defaults": {"base_ms": 2_000, "max_ms": 60_000}, "configs": configs}


def main() -> None:
    for name, data in (
        ("events.json", EVENTS),
        ("cleaning.json", cleaning()),
        ("batching.json", batching()),
        ("backoff.json", backoff()),
    ):
        (HERE / name).write_text(json.dumps(data, indent=1, ensure_ascii=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
