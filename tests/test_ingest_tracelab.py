"""TraceLab: the normalized JSONL reader and the release-DuckDB reader give the same table."""
from __future__ import annotations

import gzip
import shutil

import pandas as pd

from toollat.ingest import ingest
from toollat.ingest.tracelab import write_release_duckdb

# Everything but where a row came from (file:line vs round_pk) and which reader read it.
PROVENANCE = ["origin", "format", "source"]


def test_jsonl_and_duckdb_give_the_same_table(tracelab, tmp_path):
    src = tracelab / "sanitized_round_trace.jsonl"
    db = tmp_path / "syfi_coding_trace.duckdb"
    assert write_release_duckdb([src], db) == 19
    a = ingest([src]).to_pandas().drop(columns=PROVENANCE)
    b_res = ingest([db])
    assert b_res.report.files[0].format == "tracelab_duckdb"
    b = b_res.to_pandas().drop(columns=PROVENANCE)
    assert len(a) == 19
    pd.testing.assert_frame_equal(a, b)


def test_public_rows_have_no_args_private_rows_do(tracelab, tmp_path):
    pub = ingest([tracelab / "sanitized_round_trace.jsonl"]).to_pandas()
    priv = ingest([tracelab / "derived_round_trace.jsonl"]).to_pandas()
    assert pub.args.isna().all() and priv.args.notna().all()
    first = priv.sort_values(["session_id", "seq"]).iloc[0]
    # Row 0 of derived_round_trace.jsonl: Bash, 860 ms wall, no internal latency, round 0 of 2 tools.
    assert first.tool_name == "Bash" and first.wall_ms == 860 and pd.isna(first.internal_ms)
    assert first.parallel_size == 2 and first.context_tokens == 32272 and first.output_tokens == 931
    assert first.turn_started_at == pd.Timestamp("2026-06-01T05:40:20.151Z")
    codex = priv[priv.agent == "codex"]
    assert len(codex) == 10 and set(codex.tool_family) == {"shell"}


def test_gzip_jsonl(tracelab, tmp_path):
    gz = tmp_path / "syfi_coding_trace.jsonl.gz"
    with open(tracelab / "sanitized_round_trace.jsonl", "rb") as src, gzip.open(gz, "wb") as dst:
        shutil.copyfileobj(src, dst)
    assert len(ingest([gz]).to_pandas()) == 19
