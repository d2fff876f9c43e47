"""Regenerate the text-identity and reuse-entry vectors from the Python
reference: ``python -m tests.vectors.generate_reuse``. Both suites load
``text_keys.json`` and ``reuse_entries.json`` (docs/reuse.md)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from bus import constants as c
from bus.reuse import ENTRY_BYTES, encode_entry
from bus.textkey import text_key
from workers.cleaning import clean

HERE = Path(__file__).parent
MODEL = "all-MiniLM-L6-v2@53aa51172d142c89"

# Raw cells as stored in a parquet text column: "text" for a string cell,
# "bytes_hex" for a binary one (invalid UTF-8 included), "repeat" x "times"
# for very long ones.
CELLS: list[dict[str, object]] = [
    {"name": "empty", "text": ""},
    {"name": "space", "text": " "},
    {"name": "whitespace mix", "text": "\n\t "},
    {"name": "short reply", "text": "lol"},
    {"name": "trailing space kept", "text": "lol "},
    {"name": "case kept", "text": "LOL"},
    {"name": "deleted", "text": "[deleted]"},
    {"name": "NFC e-acute", "text": "caf\u00e9"},
    {"name": "NFD e-acute (differs from NFC)", "text": "cafe\u0301"},
    {"name": "japanese", "text": "東京の天気は晴れです。"},
    {"name": "russian", "text": "Привет, как дела?"},
    {"name": "arabic", "text": "مرحبا بالعالم"},
    {"name": "emoji zwj", "text": "👩\u200d💻 ships 🚀"},
    {"name": "nul inside", "text": "a\u0000b"},
    {"name": "valid utf-8 bytes", "bytes_hex": "636166c3a9"},
    {"name": "invalid utf-8: lone continuation", "bytes_hex": "6361668061"},
    {"name": "invalid utf-8: cut sequence", "bytes_hex": "e6b1"},
    {"name": "invalid utf-8: overlong and surrogate", "bytes_hex": "c0afeda080"},
    {"name": "invalid utf-8: ff fe", "bytes_hex": "fffe41"},
    {"name": "very long", "repeat": "word ", "times": 20000},
]


def cell_value(cell: dict[str, object]) -> str | bytes:
    if "bytes_hex" in cell:
        return bytes.fromhex(str(cell["bytes_hex"]))
    if "repeat" in cell:
        return str(cell["repeat"]) * int(str(cell["times"]))
    return str(cell["text"])


def text_key_cases() -> dict[str, object]:
    cases = []
    for cell in CELLS:
        cleaned = clean([cell_value(cell)])
        text = cleaned.texts[0]
        case = dict(cell)
        case["cleaned_utf8_hex"] = text.encode("utf-8").hex() if len(text) < 200 else None
        case["cleaned_bytes"] = len(text.encode("utf-8"))
        case["invalid_utf8"] = cleaned.counts.rows_invalid_utf8
        case["key"] = text_key(MODEL, text).hex()
        cases.append(case)
    other = "all-MiniLM-L6-v2@0000000000000000"
    return {
        "model": MODEL,
        "algorithm": "blake2b, 16-byte digest, over model_id UTF-8 || 0x1F || cleaned text UTF-8",
        "cases": cases,
        "other_model": {"model": other, "text": "lol", "key": text_key(other, "lol").hex()},
    }


def sample_vector(seed: int) -> np.ndarray:
    v = np.array([math.sin(seed + 0.37 * i) for i in range(c.EMBEDDING_DIM)], dtype=np.float32)
    return (v / np.linalg.norm(v)).astype(np.float32)


def entry_cases() -> dict[str, object]:
    good = []
    for seed, (cls, truncated, text_bytes) in enumerate(
        [(c.REUSE_CLASS_EXACT, False, 3), (c.REUSE_CLASS_INT8, True, 70000), (c.REUSE_CLASS_EXACT, False, 0)]
    ):
        v = sample_vector(seed)
        good.append(
            {
                "cls": cls,
                "truncated": truncated,
                "text_bytes": text_bytes,
                "vector": [float(x) for x in v],
                "value_hex": encode_entry(cls, v, truncated, text_bytes).hex(),
            }
        )
    base = bytes.fromhex(str(good[0]["value_hex"]))
    half = np.frombuffer(base[8:], dtype="<f2").copy()
    nan = half.copy()
    nan[5] = np.float16("nan")
    bad = [
        {"why": "cut short", "value_hex": base[:-2].hex(), "classes": ["e"], "text_bytes": 3},
        {"why": "one byte too many", "value_hex": (base + b"\0").hex(), "classes": ["e"], "text_bytes": 3},
        {"why": "unknown format", "value_hex": (b"\x02" + base[1:]).hex(), "classes": ["e"], "text_bytes": 3},
        {
            "why": "int8 entry for an exact worker",
            "value_hex": good[1]["value_hex"],
            "classes": ["e"],
            "text_bytes": 70000,
        },
        {"why": "text length differs (a collision)", "value_hex": base.hex(), "classes": ["e"], "text_bytes": 4},
        {"why": "NaN component", "value_hex": (base[:8] + nan.tobytes()).hex(), "classes": ["e"], "text_bytes": 3},
        {
            "why": "not unit length",
            "value_hex": (base[:8] + (half * np.float16(2)).tobytes()).hex(),
            "classes": ["e"],
            "text_bytes": 3,
        },
        {"why": "all zero", "value_hex": (base[:8] + bytes(ENTRY_BYTES - 8)).hex(), "classes": ["e"], "text_bytes": 3},
    ]
    return {
        "entry_bytes": ENTRY_BYTES,
        "min_cosine": 0.99999,
        "good": good,
        "accepted_by_int8": {"value_hex": good[0]["value_hex"], "classes": ["e", "q"], "text_bytes": 3},
        "bad": bad,
    }


def main() -> None:
    for name, data in (("text_keys.json", text_key_cases()), ("reuse_entries.json", entry_cases())):
        (HERE / name).write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
