"""Ingest of the real corpus: row-by-row checks against records read by hand, and whole-corpus counts.

Expected values below were read directly from the named lines of the corpus files (zcat | sed -n),
not from toollat's output.
"""
from __future__ import annotations

import pandas as pd
import pytest

from conftest import corpus_file
from toollat.ingest import ingest

PACKMIND = "PackmindHub__context-evaluator/claude-code/"
OMP = "JanDeDobbeleer__oh-my-posh/claude-code/"
AGENTV_CODEX = "EntityProcess__agentv/codex/019ed50c-2fb3-7002-a384-360bea6e7f04.jsonl.gz"


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s)


def rows_of(path) -> pd.DataFrame:
    result = ingest([path])
    assert not result.report.unbalanced()
    return result.to_pandas().set_index("call_id", drop=False)


def test_parallel_group_of_four_reads(corpus):
    # Lines 5, 8, 11, 14: four Read tool_use blocks of assistant message msg_01FJWMhsvDmXT8ehBq968iPu,
    # answered on lines 6, 9, 12, 15. Usage on each record: 3 + 15848 + 15378 input tokens.
    df = rows_of(corpus_file(corpus, PACKMIND + "00acd976-784c-4077-95cd-19aa1b51739b.jsonl.gz"))
    expected = [
        ("toolu_01Ev4mUVCHC4ujMa1RxczW1x", "2026-02-12T09:37:44.098Z", "2026-02-12T09:37:44.104Z", 5),
        ("toolu_019DSXJiRfJKgcmYkZPt8e9t", "2026-02-12T09:37:44.592Z", "2026-02-12T09:37:44.596Z", 8),
        ("toolu_017uNGjHvzT4iYW9vbXbMZ5X", "2026-02-12T09:37:45.145Z", "2026-02-12T09:37:45.148Z", 11),
        ("toolu_01NfKRwWfjUiypfT222NVYq7", "2026-02-12T09:37:45.634Z", "2026-02-12T09:37:45.947Z", 14),
    ]
    for i, (cid, emitted, result, line) in enumerate(expected):
        r = df.loc[cid]
        assert r.tool_name == "Read" and r.tool_family == "read"
        assert r.emitted_at == ts(emitted) and r.result_at == ts(result)
        assert r.wall_ms == (ts(result) - ts(emitted)).total_seconds() * 1000
        assert r.parallel_group == "msg_01FJWMhsvDmXT8ehBq968iPu"
        assert r.parallel_size == 4 and r.parallel_index == i and r.seq == i
        assert r.context_tokens == 3 + 15848 + 15378 and r.output_tokens == 2
        assert r.origin.endswith(f"00acd976-784c-4077-95cd-19aa1b51739b.jsonl.gz:{line}")
        assert r.model == "claude-opus-4-6" and r.agent == "claude_code"
        assert r.session_id == "00acd976-784c-4077-95cd-19aa1b51739b"
        assert r.args.startswith('{"file_path":"/Users/user/Code/agents-md-evaluator/src/shared/')


def test_subagent_task_call_and_error_result(corpus):
    df = rows_of(corpus_file(corpus, PACKMIND + "4550d4cb-1ea8-43b2-9231-005d7c1475b9.jsonl.gz"))
    # Line 11: Task (subagent Explore) emitted 14:55:24.397; line 57: its result at 14:56:25.072
    # with toolUseResult {agentId: afa6e0e, totalDurationMs: 59669}.
    task = df.loc["toolu_01Vcz4nxFUkag4TBeWPrVPyw"]
    assert task.tool_name == "Task" and task.tool_family == "agent"
    assert task.wall_ms == 60675.0
    assert task.internal_ms == 59669.0
    assert task.spawned_agent_id == "afa6e0e"
    assert not task.is_error and not task.interrupted
    # Line 145: Bash `rtk bun run test 2>&1` (timeout 120000) at 15:00:52.032; line 147: is_error true,
    # "Exit code 2" at 15:00:52.447.
    err = df.loc["toolu_01PYDWhNyNi7LfaUMY1UhGm9"]
    assert err.tool_name == "Bash" and err.is_error
    assert err.wall_ms == 415.0
    assert err.args == '{"command":"rtk bun run test 2>&1","timeout":120000}'
    # Line 150: the next Bash has is_error false and toolUseResult.interrupted false.
    ok = df.loc["toolu_01SECwbshgsAQsLHHRqr9rZV"]
    assert not ok.is_error and not ok.interrupted


def test_interrupted_call(corpus):
    # Line 29: Bash `gh issue view 7340 ...` at 07:43:33.700; line 30: tool_result is_error,
    # toolUseResult "User rejected tool use"; line 31: "[Request interrupted by user for tool use]"
    # whose parentUuid is line 30's uuid.
    df = rows_of(corpus_file(corpus, OMP + "18c09453-70ae-4c1d-813b-4361687351ee.jsonl.gz"))
    r = df.loc["toolu_01EGjAs6JGBwvKWb81Y2Cv4H"]
    assert r.interrupted and r.is_error
    assert r.wall_ms == 15408.0
    assert r.args.startswith('{"command":"gh issue view 7340 --repo JanDeDobbeleer/oh-my-posh --comments"')


def test_codex_wall_time_and_write_stdin_poll(corpus):
    df = rows_of(corpus_file(corpus, AGENTV_CODEX))
    # Lines 11/12: exec_command `git fetch origin && ...` 10:07:31.253 -> 10:07:32.346,
    # output "Wall time: 0.6197 seconds ... Process exited with code 0".
    r = df.loc["call_l60TLUHMKhytonPFbK7eA723"]
    assert r.agent == "codex" and r.tool_name == "exec_command" and r.tool_family == "shell"
    assert r.wall_ms == 1093.0 and r.internal_ms == pytest.approx(619.7)
    assert r.exit_code == 0 and not r.is_error
    assert r.session_id == "019ed50c-2fb3-7002-a384-360bea6e7f04"
    # Lines 442/443: `gh run watch ...` yields after 30.0017 s: "Process running with session ID 43225".
    watch = df.loc["call_GHJ1NWU1HGFTuuGsKnAsqrHc"]
    assert watch.internal_ms == pytest.approx(30001.7) and pd.isna(watch.exit_code)
    # Lines 448/449: write_stdin {session_id: 43225, yield_time_ms: 30000} 10:34:17.941 -> 10:34:38.962,
    # "Wall time: 20.8740 seconds ... Process exited with code 0": a poll of the call above.
    poll = df.loc["call_7oIIgkG4W27U5SkASxzL9vTk"]
    assert poll.tool_name == "write_stdin" and poll.poll_of == "call_GHJ1NWU1HGFTuuGsKnAsqrHc"
    assert poll.wall_ms == 21021.0 and poll.internal_ms == pytest.approx(20874.0)
    assert poll.exit_code == 0
    assert poll.context_tokens is not None and poll.context_tokens > 0


def test_call_whose_result_never_came(corpus):
    # Line 49: Bash toolu_017Bui7LZTHy1D2va3nQWT3U; the file ends at line 50 without its result.
    path = corpus_file(corpus, PACKMIND + "38fb3e7a-51f4-433c-b995-d91f40910373.jsonl.gz")
    result = ingest([path])
    df = result.to_pandas()
    assert "toolu_017Bui7LZTHy1D2va3nQWT3U" not in set(df.call_id)
    assert result.report.total("without_result") == 2  # lines 49 and 50 both wait forever
    assert result.report.files[0].lines == 50 and result.report.files[0].balanced


def test_whole_corpus_counts(corpus_ingest):
    report, df = corpus_ingest.report, corpus_ingest.to_pandas()
    d = report.to_dict()
    assert df.call_id.is_unique
    assert d["unbalanced_files"] == []
    assert d["lines"] == d["lines_parsed"] + sum(d["lines_skipped"].values())
    # Each real call once: copies in forked/resumed sessions are counted, not kept twice.
    read = {a: d["calls_by_agent"][a] + d["duplicates_by_agent"].get(a, 0) for a in d["calls_by_agent"]}
    assert read["claude_code"] >= 30_000 and d["calls_by_agent"]["codex"] >= 5_000
    assert d["calls_by_agent"]["claude_code"] >= 28_000
    unsupported = d["unsupported"]
    assert sum("Gemini CLI" in v for v in unsupported.values()) == 4
    assert sum("Copilot CLI" in v for v in unsupported.values()) == 12
    assert d["lines_skipped"].keys() <= {k for k in d["lines_skipped"] if k.startswith("unsupported file")}
    assert d["notes"].get("concatenated records split") == 8
    assert set(df.tool_family) <= {"shell", "search", "read", "edit", "write", "web", "agent", "human", "plan", "mcp", "other"}
    assert (df.wall_ms >= 0).all()
    assert set(df.source) == {"entireio__cli", "EntityProcess__agentv", "JanDeDobbeleer__oh-my-posh",
                              "PackmindHub__context-evaluator", "entireio__entire-graph"}
    # seq is the emission order within each session
    for _, g in df.groupby("session_id"):
        assert list(g.sort_values("seq").seq) == list(range(len(g)))
        assert g.sort_values("seq").emitted_at.is_monotonic_increasing
