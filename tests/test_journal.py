"""The journal's hash chain verifies, and catches every kind of tampering:
an edited, removed, inserted or reordered line, lines cut off the end, an
edited last line, lines added after the run ended."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from manager.__main__ import main as manager_main
from manager.journal import FIELDS, GENESIS, SCHEMA_VERSION, Head, Journal, line_hash, verify, verify_run
from manager.redaction import Redactor
from manager.state import write_atomic


def write_journal(path: Path, n: int = 6) -> Journal:
    j = Journal(path, "run-1", Redactor(include_env=False))
    for i in range(n):
        j.stage = "embedding" if i else "scanning"
        j.write("job_done", f"job {i}", counters={"rows": i}, usage={"wall_s": 0.1 * i}, data={"i": i})
    j.close()
    return j


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines()


def put(path: Path, rows: list[bytes]) -> None:
    path.write_bytes(b"\n".join(rows) + b"\n")


def test_records_carry_the_schema_and_chain(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    write_journal(p, 3)
    recs = [json.loads(x) for x in lines(p)]
    assert [r["seq"] for r in recs] == [1, 2, 3]
    assert all(set(FIELDS) <= set(r) and r["v"] == SCHEMA_VERSION for r in recs)
    assert recs[0]["prev_hash"] == GENESIS
    assert recs[1]["prev_hash"] == line_hash(lines(p)[0])
    assert recs[0]["stage"] == "scanning" and recs[2]["stage"] == "embedding"
    assert recs[2]["counters"] == {"rows": 2} and recs[2]["ts"].endswith("Z")


def test_intact_journal_verifies(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    j = write_journal(p)
    result = verify(p, anchor=j.head, final=True)
    assert result.ok, result.problems
    assert result.lines == 6 and result.head == j.head


def test_reopened_journal_continues_the_chain(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    write_journal(p, 3)
    j = Journal(p, "run-2", Redactor(include_env=False))
    rec = j.write("run_started", "again")
    j.close()
    assert rec["seq"] == 4 and rec["prev_hash"] == line_hash(lines(p)[2])
    assert verify(p).ok


def test_unknown_level_is_refused(tmp_path: Path) -> None:
    j = Journal(tmp_path / "e.jsonl", "r", Redactor(include_env=False))
    with pytest.raises(ValueError):
        j.write("x", level="loud")
    j.close()


def test_edited_line_is_caught(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    write_journal(p)
    rows = lines(p)
    rows[2] = rows[2].replace(b'"rows":2', b'"rows":9')
    put(p, rows)
    result = verify(p)
    assert not result.ok
    assert any(s.startswith("line 4: prev_hash") for s in result.problems)


def test_removed_line_is_caught(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    write_journal(p)
    rows = lines(p)
    del rows[3]
    put(p, rows)
    problems = verify(p).problems
    assert any("line 4: prev_hash" in s for s in problems)
    assert any("seq 5, expected 4" in s for s in problems)


def test_removed_first_line_is_caught(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    write_journal(p)
    put(p, lines(p)[1:])
    assert any("line 1: prev_hash" in s for s in verify(p).problems)


def test_reordered_lines_are_caught(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    write_journal(p)
    rows = lines(p)
    rows[2], rows[3] = rows[3], rows[2]
    put(p, rows)
    problems = verify(p).problems
    assert any("line 3: prev_hash" in s for s in problems)
    assert any("expected 3" in s for s in problems)


def test_inserted_line_is_caught(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    write_journal(p)
    rows = lines(p)
    forged = json.loads(rows[1])
    forged.update(seq=3, msg="forged", prev_hash=line_hash(rows[1]))
    rows.insert(2, json.dumps(forged, separators=(",", ":")).encode())
    put(p, rows)
    assert any("line 4: prev_hash" in s for s in verify(p).problems)


def test_cut_tail_is_caught_by_the_anchor(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    j = write_journal(p)
    put(p, lines(p)[:-2])
    assert verify(p).ok  # the chain alone cannot see a clean cut...
    problems = verify(p, anchor=j.head).problems
    assert any("lines cut off the end" in s for s in problems)  # ...the anchor does


def test_edited_last_line_is_caught_by_the_anchor(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    j = write_journal(p)
    rows = lines(p)
    rows[-1] = rows[-1].replace(b"job 5", b"job X")
    put(p, rows)
    assert any("line edited" in s for s in verify(p, anchor=j.head).problems)


def test_lines_added_after_the_end_are_caught(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    j = write_journal(p)
    Journal(p, "run-1", Redactor(include_env=False)).write("job_done", "late")
    assert verify(p, anchor=j.head, final=False).ok  # a live run keeps writing
    assert any("lines added" in s for s in verify(p, anchor=j.head, final=True).problems)


def test_garbage_line_is_reported(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    write_journal(p)
    rows = lines(p)
    rows[1] = b"{not json"
    put(p, rows)
    problems = verify(p).problems
    assert "line 2: not valid JSON" in problems and any("line 3: prev_hash" in s for s in problems)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_single_byte_change_is_caught(tmp_path: Path, data: st.DataObject) -> None:
    p = tmp_path / "events.jsonl"
    if not p.exists():
        write_journal(p)
    original = p.read_bytes()
    head = Head(6, line_hash(original.splitlines()[-1]))
    pos = data.draw(st.integers(0, len(original) - 2), label="byte")  # not the final newline
    new = data.draw(st.integers(0, 255).filter(lambda b: b != original[pos]), label="value")
    tampered = original[:pos] + bytes([new]) + original[pos + 1 :]
    p.write_bytes(tampered)
    try:
        assert not verify(p, anchor=head, final=True).ok
    finally:
        p.write_bytes(original)


def test_secrets_never_reach_the_journal(tmp_path: Path) -> None:
    p = tmp_path / "events.jsonl"
    j = Journal(p, "r", Redactor(["hunter2-pw"], include_env=False))
    j.write(
        "job_dead",
        "redis://:hunter2-pw@db:6379/0 refused",
        error="auth hunter2-pw failed",
        data={"nested": ["key sk-abcdefghijklmnopqrstuvwx", {"hunter2-pw": 1}]},
    )
    j.close()
    text = p.read_text()
    assert "hunter2-pw" not in text and "sk-abcdefghijklmnop" not in text
    assert verify(p).ok


def run_dir_with_state(tmp_path: Path) -> tuple[Path, Journal]:
    run = tmp_path / "run"
    j = write_journal(run / "events.jsonl")
    write_atomic(run / "state.json", {"final": True, "journal": {"head": j.head.to_dict()}})
    return run, j


def test_verify_journal_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run, _ = run_dir_with_state(tmp_path)
    assert manager_main(["verify-journal", str(run)]) == 0
    assert "OK" in capsys.readouterr().out
    assert manager_main(["verify-journal", str(run / "events.jsonl"), "--json"]) == 0
    rows = lines(run / "events.jsonl")
    put(run / "events.jsonl", rows[:-1])  # cut the last line: only state.json's anchor can tell
    assert manager_main(["verify-journal", str(run)]) == 1
    out = capsys.readouterr().out
    assert "TAMPERED" in out and "cut off" in out
    assert manager_main(["verify-journal", str(tmp_path / "missing")]) == 2


def test_verify_run_reads_the_anchor_from_state(tmp_path: Path) -> None:
    run, j = run_dir_with_state(tmp_path)
    assert verify_run(run).ok and verify_run(run).head == j.head
