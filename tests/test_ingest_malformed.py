"""Malformed input survives: each problem is counted, none stops the run, no valid call near it is lost.

Files are built from real corpus lines (the first 16 lines of a Claude Code session hold four
parallel Read calls and their results; a Codex rollout gives its calls), with damage added.
"""
from __future__ import annotations

import gzip
import json
import os
import shutil
from pathlib import Path

import pytest

from conftest import corpus_file
from toollat.ingest import ingest

CLAUDE = "PackmindHub__context-evaluator/claude-code/00acd976-784c-4077-95cd-19aa1b51739b.jsonl.gz"
CODEX = "EntityProcess__agentv/codex/019ed50c-2fb3-7002-a384-360bea6e7f04.jsonl.gz"
READS = ["toolu_01Ev4mUVCHC4ujMa1RxczW1x", "toolu_019DSXJiRfJKgcmYkZPt8e9t",
         "toolu_017uNGjHvzT4iYW9vbXbMZ5X", "toolu_01NfKRwWfjUiypfT222NVYq7"]


@pytest.fixture(scope="module")
def claude_lines(corpus) -> list[bytes]:
    with gzip.open(corpus_file(corpus, CLAUDE), "rb") as fh:
        return fh.read().split(b"\n")[:16]


@pytest.fixture(scope="module")
def clean(claude_lines, tmp_path_factory):
    path = tmp_path_factory.mktemp("clean") / "session.jsonl"
    path.write_bytes(b"\n".join(claude_lines) + b"\n")
    return ingest([path]).to_pandas().set_index("call_id")


def run(path: Path):
    result = ingest([path])
    rep = result.report
    assert not rep.unbalanced(), "every line must be parsed or skipped with a reason"
    return result.to_pandas().set_index("call_id"), rep


def assert_reads_intact(df, clean):
    for cid in READS:
        assert cid in df.index, f"valid call {cid} lost"
        for col in ("emitted_at", "result_at", "wall_ms", "args", "parallel_size"):
            assert df.loc[cid, col] == clean.loc[cid, col]


def test_truncated_last_line_and_non_json_lines(claude_lines, clean, tmp_path):
    lines = list(claude_lines)
    lines.insert(3, b"this is not json {")
    lines.insert(9, b"\x01\x02garbage")
    lines.insert(12, b"[1, 2, 3]")
    body = b"\n".join(lines) + b"\n" + claude_lines[6][: len(claude_lines[6]) // 2]  # cut mid-record
    path = tmp_path / "s.jsonl"
    path.write_bytes(body)
    df, rep = run(path)
    skipped = rep.skipped()
    assert skipped["truncated last line"] == 1
    assert skipped["invalid JSON"] == 2
    assert skipped["not a JSON object"] == 1
    assert_reads_intact(df, clean)


def test_wrong_types_in_known_fields(claude_lines, clean, tmp_path):
    recs = [json.loads(l) for l in claude_lines if l.strip()]
    bad = []
    # an assistant record whose tool_use has no usable timestamp / message
    r = json.loads(json.dumps(recs[4]))
    r["timestamp"] = 12345
    r["message"]["content"][0]["id"] = "toolu_bad_timestamp"
    bad.append(r)
    r = json.loads(json.dumps(recs[4]))
    r["message"] = "not an object"
    bad.append(r)
    # usage with a string count, tool input that is a list, id that is a number
    r = json.loads(json.dumps(recs[4]))
    r["message"]["usage"]["input_tokens"] = "lots"
    r["message"]["id"] = "msg_injected"
    r["message"]["content"][0]["id"] = "toolu_list_input"
    r["message"]["content"][0]["input"] = ["ls"]
    bad.append(r)
    r = json.loads(json.dumps(recs[4]))
    r["message"]["content"][0]["id"] = 42
    bad.append(r)
    res = json.loads(json.dumps(recs[5]))
    res["message"]["content"][0]["tool_use_id"] = "toolu_list_input"
    res["message"]["content"][0]["is_error"] = "yes"
    bad.append(res)
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join([*(json.dumps(x) for x in recs), *(json.dumps(x) for x in bad)]) + "\n")
    df, rep = run(path)
    assert rep.skipped()["bad field: timestamp"] == 1
    assert rep.skipped()["bad field: message"] == 1
    notes = rep.notes()
    assert notes["tool_use block without a usable id or name"] == 1
    assert notes["tool_use input not an object (kept as given)"] == 1
    assert notes["bad field: is_error (taken as false)"] == 1
    assert df.loc["toolu_list_input", "args"] == '["ls"]'
    assert not df.loc["toolu_list_input", "is_error"]
    assert "toolu_bad_timestamp" not in df.index
    assert_reads_intact(df, clean)


def test_unknown_record_types_and_result_without_call(claude_lines, clean, tmp_path):
    recs = [json.loads(l) for l in claude_lines if l.strip()]
    orphan = json.loads(json.dumps(recs[5]))
    orphan["message"]["content"][0]["tool_use_id"] = "toolu_never_emitted"
    extra = [
        {"type": "brand-new-record", "sessionId": recs[4]["sessionId"], "uuid": "x"},
        {"sessionId": recs[4]["sessionId"], "uuid": "y"},  # no type at all
        orphan,
    ]
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in recs[:8] + extra + recs[8:]) + "\n")
    df, rep = run(path)
    assert rep.skipped()["unknown record type"] == 1
    assert rep.notes()["unknown record type seen: brand-new-record"] == 1
    assert rep.skipped()["record without a type"] == 1
    assert rep.total("results_without_call") == 1
    assert_reads_intact(df, clean)


def test_codex_malformed(corpus, tmp_path):
    with gzip.open(corpus_file(corpus, CODEX), "rb") as fh:
        lines = fh.read().split(b"\n")[:40]
    extra = [
        {"timestamp": "2026-06-17T10:07:40.000Z", "type": "response_item",
         "payload": {"type": "function_call", "name": "exec_command", "arguments": "{not json", "call_id": "call_badargs"}},
        {"timestamp": "2026-06-17T10:07:41.000Z", "type": "response_item",
         "payload": {"type": "function_call_output", "call_id": "call_badargs", "output": "Process exited with code 3"}},
        {"timestamp": "2026-06-17T10:07:42.000Z", "type": "response_item",
         "payload": {"type": "function_call_output", "call_id": "call_nobody", "output": "x"}},
        {"timestamp": "2026-06-17T10:07:43.000Z", "type": "response_item", "payload": "a string"},
        {"timestamp": "2026-06-17T10:07:44.000Z", "type": "mystery", "payload": {}},
    ]
    clean_path = tmp_path / "clean.jsonl"
    clean_path.write_bytes(b"\n".join(lines) + b"\n")
    clean_df, _ = run(clean_path)
    path = tmp_path / "rollout.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n" + "\n".join(json.dumps(x) for x in extra).encode() + b"\n")
    df, rep = run(path)
    assert df.loc["call_badargs", "args"] == '{"raw":"{not json"}'
    assert df.loc["call_badargs", "is_error"] and df.loc["call_badargs", "exit_code"] == 3
    assert rep.notes()["function_call arguments not valid JSON (kept as text)"] == 1
    assert rep.total("results_without_call") == 1
    assert rep.skipped()["bad field: payload"] == 1
    assert rep.skipped()["unknown record type"] == 1
    assert len(clean_df) > 3 and set(clean_df.index) <= set(df.index)


def test_empty_binary_and_corrupt_gzip_files(claude_lines, tmp_path):
    (tmp_path / "empty.jsonl").write_bytes(b"")
    (tmp_path / "blob.bin").write_bytes(os.urandom(4096) + b"\x00" * 64)
    good = gzip.compress(b"\n".join(claude_lines) + b"\n")
    (tmp_path / "cut.jsonl.gz").write_bytes(good[: len(good) * 2 // 3])  # gzip stream cut short
    result = ingest([tmp_path])
    rep = result.report
    by = {f.path: f for f in rep.files}
    assert by["empty.jsonl"].unsupported == "empty file"
    assert by["blob.bin"].unsupported == "binary file"
    cut = by["cut.jsonl.gz"]
    assert cut.format == "claude_code"
    assert any(n.startswith("rest of file unreadable") for n in cut.notes)
    assert cut.balanced and cut.lines > 0


def test_directory_of_mixed_formats(corpus, tracelab, tmp_path):
    mixed = tmp_path / "mixed"
    (mixed / "a").mkdir(parents=True)
    (mixed / "b" / "deeper").mkdir(parents=True)
    shutil.copy(corpus_file(corpus, CLAUDE), mixed / "a" / "claude.log")  # name says nothing
    shutil.copy(corpus_file(corpus, CODEX), mixed / "b" / "deeper" / "rollout.data")
    shutil.copy(tracelab / "derived_round_trace.jsonl", mixed / "b" / "rounds.txt")
    gemini = next((corpus / "entireio__cli" / "gemini-cli").iterdir())
    shutil.copy(gemini, mixed / "a" / "gem.gz")
    copilot = next((corpus / "EntityProcess__agentv" / "copilot-cli").iterdir())
    shutil.copy(copilot, mixed / "a" / "copilot.jsonl.gz")
    (mixed / "notes.txt").write_text("just some notes\n")
    (mixed / "b" / "empty").write_bytes(b"")
    result = ingest([mixed])
    rep = result.report
    by = {f.path: f for f in rep.files}
    assert by["a/claude.log"].format == "claude_code"
    assert by["b/deeper/rollout.data"].format == "codex"
    assert by["b/rounds.txt"].format == "tracelab_jsonl"
    assert by["a/gem.gz"].unsupported == "Gemini CLI session document (JSON)"
    assert by["a/copilot.jsonl.gz"].unsupported == "Copilot CLI event log"
    assert by["notes.txt"].unsupported == "text, not JSON lines"
    assert by["b/empty"].unsupported == "empty file"
    df = result.to_pandas()
    assert set(df.agent) == {"claude_code", "codex"}
    assert set(df.format) == {"claude_code", "codex", "tracelab_jsonl"}
    assert set(df.source) >= {"a", "b"}
    assert not rep.unbalanced()
