"""Hostile input: nesting that would exhaust Python's recursion, lines too long to hold in memory,
and outputs that survive a kill. Each input is a real corpus slice with the damage added; every
valid call must come through, and every bad line be counted under its reason.
"""
from __future__ import annotations

import gzip
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest

from conftest import corpus_file
from toollat.ingest import CorruptCallsFile, ingest, load_calls, write_calls

CLAUDE = "PackmindHub__context-evaluator/claude-code/00acd976-784c-4077-95cd-19aa1b51739b.jsonl.gz"
CODEX = "EntityProcess__agentv/codex/019ed50c-2fb3-7002-a384-360bea6e7f04.jsonl.gz"
TOOLLAT = [sys.executable, "-m", "toollat.cli"]


@pytest.fixture(scope="module")
def claude_lines(corpus) -> list[bytes]:
    with gzip.open(corpus_file(corpus, CLAUDE), "rb") as fh:
        return [l for l in fh.read().split(b"\n") if l.strip()]


@pytest.fixture(scope="module")
def clean(claude_lines, tmp_path_factory):
    path = tmp_path_factory.mktemp("clean") / "session.jsonl"
    path.write_bytes(b"\n".join(claude_lines) + b"\n")
    return ingest([path]).to_pandas().set_index("call_id")


def _same_calls(df: pd.DataFrame, clean: pd.DataFrame) -> None:
    assert set(df.index) == set(clean.index), "a valid call was lost or invented"
    cols = ["emitted_at", "result_at", "wall_ms", "args", "seq", "parallel_size"]
    pd.testing.assert_frame_equal(df.loc[clean.index, cols], clean[cols])


def _run(paths, **kw):
    result = ingest(paths, **kw)
    assert not result.report.unbalanced()
    return result.to_pandas().set_index("call_id"), result.report


def test_deep_nesting_is_a_counted_line_not_a_crash(claude_lines, clean, tmp_path):
    deep_valid = b'{"type": "user", "x": ' + b"[" * 600 + b"]" * 600 + b"}"   # orjson accepts it
    deep_object = b'{"a":' * 900 + b"1" + b"}" * 900
    lines = list(claude_lines)
    lines.insert(5, b"[" * 1000)            # the stdlib fallback decoder would recurse here
    lines.insert(9, deep_valid)
    lines.insert(12, deep_object)
    path = tmp_path / "s.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n" + b"[" * 5000)   # and as a last line without newline
    df, rep = _run([path])
    assert rep.skipped()["nested too deep"] == 4
    _same_calls(df, clean)


def test_codex_arguments_nested_too_deep_are_kept_as_text(corpus, tmp_path):
    with gzip.open(corpus_file(corpus, CODEX), "rb") as fh:
        recs = [json.loads(l) for l in fh.read().split(b"\n") if l.strip()]
    clean_path = tmp_path / "clean.jsonl"
    clean_path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    clean = ingest([clean_path]).to_pandas().set_index("call_id")
    target = next(r for r in recs if r.get("type") == "response_item" and r["payload"].get("type") == "function_call")
    target["payload"]["arguments"] = "[" * 3000 + "]" * 3000
    path = tmp_path / "deep.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    df, rep = _run([path])
    cid = target["payload"]["call_id"]
    assert set(df.index) == set(clean.index)
    assert json.loads(df.loc[cid, "args"]) == {"raw": "[" * 3000 + "]" * 3000}
    assert rep.notes()["function_call arguments nested too deep (kept as text)"] == 1


def test_cli_survives_brackets_after_a_valid_log(corpus, tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_bytes(gzip.open(corpus_file(corpus, CLAUDE)).read() + b"[" * 1000 + b"\n")
    out = tmp_path / "calls.parquet"
    proc = subprocess.run([*TOOLLAT, "ingest", path, "--out", out, "--json"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["lines_skipped"] == {"nested too deep": 1}
    assert len(pd.read_parquet(out)) == summary["calls"] > 0


def _gzip_with_long_line(path: Path, before: list[bytes], after: list[bytes], mib: int) -> None:
    """A gzip file whose middle line is ``mib`` MiB long, written in pieces (never held whole)."""
    piece = b'{"type": "user", "pad": "' + b"a" * (1024 * 1024 - 25)
    with gzip.open(path, "wb", compresslevel=1) as fh:
        fh.write(b"".join(line + b"\n" for line in before))
        for _ in range(mib):
            fh.write(piece)
        fh.write(b'"}\n' + b"\n".join(after) + b"\n")


def test_long_line_is_skipped_without_being_held(claude_lines, clean, tmp_path):
    path = tmp_path / "long.jsonl.gz"
    _gzip_with_long_line(path, claude_lines[:7], claude_lines[7:], mib=48)
    tracemalloc.start()
    try:
        df, rep = _run([path], max_line_bytes=1024 * 1024)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert rep.skipped() == {"line too long": 1}
    _same_calls(df, clean)
    assert peak < 16 * 1024 * 1024, f"peak Python allocation {peak / 2**20:.0f} MiB for a 48 MiB line"


def test_long_first_line_does_not_hide_the_log(claude_lines, clean, tmp_path):
    path = tmp_path / "first.jsonl.gz"
    _gzip_with_long_line(path, [], claude_lines, mib=20)   # over the 16 MiB sniffing bound too
    df, rep = _run([path])
    assert rep.files[0].format == "claude_code"
    assert rep.skipped() == {"line too long": 1}
    _same_calls(df, clean)


def test_unsupported_file_with_one_huge_line_is_counted_in_chunks(tmp_path):
    path = tmp_path / "junk.gz"
    with gzip.open(path, "wb", compresslevel=1) as fh:
        for _ in range(32):
            fh.write(b"x" * (1024 * 1024))
    tracemalloc.start()
    try:
        result = ingest([path, tmp_path], max_line_bytes=1024 * 1024)  # the file, and its folder (same file once)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert result.report.skipped() == {"unsupported file: text, not JSON lines": 1}
    assert peak < 8 * 1024 * 1024


def test_load_calls_applies_the_same_limit(claude_lines, clean, tmp_path):
    path = tmp_path / "long.jsonl.gz"
    _gzip_with_long_line(path, claude_lines[:3], claude_lines[3:], mib=3)
    df, rep = load_calls([path], max_line_bytes=1024 * 1024)
    assert rep.skipped() == {"line too long": 1}
    assert set(df.call_id) == set(clean.index)


# -- atomic outputs ----------------------------------------------------------------------------
def test_sigkill_mid_write_leaves_the_previous_file(corpus, tmp_path):
    """Kill a real `toollat ingest` while it writes: the previous table must survive intact."""
    out = tmp_path / "calls.parquet"
    write_calls(ingest([corpus_file(corpus, CLAUDE)]).table, out)
    before = out.read_bytes()
    proc = subprocess.Popen([*TOOLLAT, "ingest", corpus / "PackmindHub__context-evaluator", "--out", out, "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    caught = None
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        tmps = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
        if tmps:  # the write has begun: kill it now
            os.kill(proc.pid, signal.SIGKILL)
            caught = tmps[0]
            break
        time.sleep(0.0005)
    proc.wait(timeout=30)
    assert caught is not None, "the output was never written through a temp file beside it"
    assert proc.returncode == -signal.SIGKILL
    assert out.read_bytes() == before, "the previous table was damaged by a killed write"
    pd.read_parquet(out)  # and it still reads


def test_failed_write_cleans_up_and_keeps_the_old_file(corpus, tmp_path):
    out = tmp_path / "calls.parquet"
    table = ingest([corpus_file(corpus, CLAUDE)]).table
    write_calls(table, out)
    before = out.read_bytes()
    with pytest.raises(Exception):
        write_calls(table.drop_columns(["call_id"]).append_column("call_id", [[object()] * 0]), out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["calls.parquet"]


@pytest.mark.parametrize("keep", [0, 4, 1000, -8])
def test_truncated_parquet_is_reported_as_corrupt(corpus, tmp_path, keep):
    out = tmp_path / "calls.parquet"
    write_calls(ingest([corpus_file(corpus, CLAUDE)]).table, out)
    data = out.read_bytes()
    out.write_bytes(data[:keep])
    with pytest.raises(CorruptCallsFile, match=f"corrupt file: {out}"):
        load_calls([out])


def test_evaluate_data_names_the_corrupt_file(tmp_path, capsys):
    """What `evaluate/simulate --data x.parquet` say (their shared data step, before any model work)."""
    import typer

    from toollat.cli import _data

    out = tmp_path / "calls.parquet"
    out.write_bytes(b"PAR1")
    with pytest.raises(typer.Exit) as exc:
        _data([out], progress=False)
    err = capsys.readouterr().err.replace("\n", "")
    assert exc.value.exit_code == 2
    assert f"corrupt file: {out}" in err and "no tool calls found" not in err
