"""The execution start of Claude Code ``Bash`` calls (``exec_started_at``), from their
``bash_progress`` records: checked against corpus lines read by hand (zcat | sed -n), the
versions that write no such records, other formats, bad records, and older tables.

Expected values were read from the named lines of the corpus files, not from toollat's output.
"""
from __future__ import annotations

import gzip
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import corpus_file
from toollat.ingest import ingest, read_calls, write_calls

PACKMIND = "PackmindHub__context-evaluator/claude-code/"
CLI = "entireio__cli/claude-code/"
OMP = "JanDeDobbeleer__oh-my-posh/claude-code/"
AGENTV_CODEX = "EntityProcess__agentv/codex/019ed50c-2fb3-7002-a384-360bea6e7f04.jsonl.gz"
COMMIT_FILE = PACKMIND + "a9e81d0e-ac68-490f-95de-9f12a3c7ed23.jsonl.gz"
COMMIT_CALL = "toolu_01DTfhweeaz8pdVRpiox6Cs9"


def ts(s: str) -> pd.Timestamp:
    return pd.Timestamp(s)


def rows_of(path) -> pd.DataFrame:
    result = ingest([path])
    assert not result.report.unbalanced()
    return result.to_pandas().set_index("call_id", drop=False)


def test_approval_wait_then_execution(corpus):
    # Line 242 (version 2.1.39): Bash `git -C ... commit -m ...` emitted 15:49:56.800.
    # Line 243: bash_progress of that call at 15:54:14.776, elapsedTimeSeconds 2;
    # line 244: at 15:54:15.777, elapsed 3; line 245: its tool_result at 15:54:16.606.
    # Execution began at min(14.776 - 2, 15.777 - 3) = 15:54:12.776: 255.976 s of waiting
    # (the commit's approval), then 3.830 s of pre-commit hooks.
    df = rows_of(corpus_file(corpus, COMMIT_FILE))
    r = df.loc[COMMIT_CALL]
    assert r.tool_name == "Bash"
    assert r.emitted_at == ts("2026-02-12T15:49:56.800Z") and r.result_at == ts("2026-02-12T15:54:16.606Z")
    assert r.exec_started_at == ts("2026-02-12T15:54:12.776Z")
    assert (r.exec_started_at - r.emitted_at).total_seconds() == 255.976
    assert (r.result_at - r.exec_started_at).total_seconds() == 3.830
    # Lines 237/238: `git ... log --oneline -5`, answered in 319 ms, has no progress record.
    assert pd.isna(df.loc["toolu_011XyeymUX6a2dzAAQyjUd5m"].exec_started_at)
    # Calls of other tools never have one.
    assert df.loc[df.tool_name != "Bash", "exec_started_at"].isna().all()


def test_earliest_estimate_not_the_first_record(corpus):
    # Version 2.1.12. Line 87: Bash emitted 09:51:43.875. Progress: line 88 at 09:51:45.965 with
    # elapsed 1 (start <= 44.965), line 89 at 46.967 with elapsed 3 (start <= 43.967), then
    # 47.968/4, 48.969/5, 49.971/6; line 93: result at 09:51:50.807. The seconds are floored,
    # so every record bounds the start from above and the earliest bound is the start.
    df = rows_of(corpus_file(corpus, CLI + "2026-01-20-250f24a9-9cb5-4265-b13e-a9d193df03b8.jsonl.gz"))
    r = df.loc["toolu_01SWFo88eepJ6YhU3FSmA7Ke"]
    assert r.emitted_at == ts("2026-01-20T09:51:43.875Z")
    assert r.exec_started_at == ts("2026-01-20T09:51:43.967Z")
    assert r.result_at == ts("2026-01-20T09:51:50.807Z")


def test_versions_that_write_no_progress_records(corpus):
    # Version 2.1.217, line 506: `golangci-lint run ./... 2>&1 | tail -150` emitted 07:04:41.571,
    # result (line 508) 07:05:46.569: 65 s, most of it linting, yet the file holds no progress
    # record at all: this version does not write them.
    path = corpus_file(corpus, OMP + "33cbf43f-a729-447c-9e1e-94d7625775b3.jsonl.gz")
    with gzip.open(path, "rt") as fh:
        assert not any('"type":"progress"' in line for line in fh)
    df = rows_of(path)
    r = df.loc["toolu_01EYsfDVadvwEbp2e1hxtX86"]
    assert r.wall_ms == 64998.0 and pd.isna(r.exec_started_at)
    assert df.exec_started_at.isna().all()
    # Version 2.1.7 (before the records appear), lines 11/14: `ls -la ...` waited 61 s; no start.
    df = rows_of(corpus_file(corpus, CLI + "2026-01-20-20b81bf8-77cd-4205-8ac9-727b573a70e4.jsonl.gz"))
    assert df.loc["toolu_01JnhuEfhSxCjrsJE9e725yM"].wall_ms == 61028.0
    assert df.exec_started_at.isna().all()


def test_codex_and_tracelab_rows_have_none(corpus, tracelab):
    assert rows_of(corpus_file(corpus, AGENTV_CODEX)).exec_started_at.isna().all()
    for name in ("derived_round_trace.jsonl", "sanitized_round_trace.jsonl"):
        assert rows_of(tracelab / name).exec_started_at.isna().all()


def test_whole_corpus(corpus_ingest):
    df = corpus_ingest.to_pandas()
    has = df[df.exec_started_at.notna()]
    # 1,559 Bash calls carry bash_progress records (counted by a separate script reading the raw
    # lines; experiments/tail/ingest_findings.md), all Claude Code, none outside its call.
    assert len(has) == 1559
    assert set(has.tool_name) == {"Bash"} and set(has.agent) == {"claude_code"}
    assert ((has.emitted_at <= has.exec_started_at) & (has.exec_started_at <= has.result_at)).all()
    # The first record comes after about 2 s of execution: no start is later than result - 1.9 s.
    assert ((has.result_at - has.exec_started_at).dt.total_seconds() >= 1.9).all()
    assert corpus_ingest.report.notes().get("bash_progress start outside the call's emission..result (clamped)", 0) == 0


def _lines(path) -> list[str]:
    with gzip.open(path, "rt") as fh:
        return fh.read().splitlines()


def test_bad_and_out_of_range_records(corpus, tmp_path):
    # Lines 242..245 of the commit above, with the progress records altered: a string elapsed
    # time is ignored (and counted); a start before the emission is clamped to it (and counted).
    lines = _lines(corpus_file(corpus, COMMIT_FILE))[241:245]
    recs = [json.loads(x) for x in lines]
    recs[1]["data"]["elapsedTimeSeconds"] = "2"
    recs[2]["data"]["elapsedTimeSeconds"] = 600  # 15:54:15.777 - 600 s is before the emission
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    result = ingest([path])
    r = result.to_pandas().set_index("call_id").loc[COMMIT_CALL]
    assert r.exec_started_at == r.emitted_at == ts("2026-02-12T15:49:56.800Z")
    notes = result.report.notes()
    assert notes["bash_progress without a usable call id, timestamp or elapsed time (ignored)"] == 1
    assert notes["bash_progress start outside the call's emission..result (clamped)"] == 1
    assert result.report.files[0].parsed == 4  # every line still counted as read


def test_table_written_before_the_column_reads_it_as_null(corpus, tmp_path):
    table = ingest([corpus_file(corpus, COMMIT_FILE)]).table
    old = tmp_path / "old.parquet"
    pq.write_table(table.drop_columns(["exec_started_at"]), old)
    df = read_calls(old)
    assert "exec_started_at" in df.columns and df.exec_started_at.isna().all()
    assert str(df.exec_started_at.dtype) == "datetime64[ms, UTC]"
    new = tmp_path / "new.parquet"
    write_calls(table, new)
    back = read_calls(new).set_index("call_id")
    assert back.loc[COMMIT_CALL].exec_started_at == ts("2026-02-12T15:54:12.776Z")


@pytest.mark.parametrize("bad", [True, -1, None])
def test_elapsed_must_be_a_non_negative_number(corpus, tmp_path, bad):
    recs = [json.loads(x) for x in _lines(corpus_file(corpus, COMMIT_FILE))[241:245]]
    for r in recs[1:3]:
        r["data"]["elapsedTimeSeconds"] = bad
    path = tmp_path / "s.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in recs) + "\n")
    result = ingest([path])
    assert pd.isna(result.to_pandas().set_index("call_id").loc[COMMIT_CALL].exec_started_at)
    assert result.report.notes()["bash_progress without a usable call id, timestamp or elapsed time (ignored)"] == 2
