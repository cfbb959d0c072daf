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


def test_private_and_public_forms_together_are_copies(tracelab, tmp_path):
    """The same 19 rounds in both forms: ids are pseudonymized in the public one, so the copies
    are recognised by round and tool index, timestamps and sizes; the private form is kept."""
    priv = ingest([tracelab / "derived_round_trace.jsonl"]).to_pandas()
    both = ingest([tracelab / "sanitized_round_trace.jsonl", tracelab / "derived_round_trace.jsonl"])
    rep = both.report.to_dict()
    df = both.to_pandas()
    assert len(df) == len(priv) and rep["duplicates_dropped"] == len(priv)
    assert rep["duplicates_by_agent"] == priv.agent.value_counts().to_dict()
    assert set(df.call_id) == set(priv.call_id) and df.args.notna().all()   # the form with arguments
    assert rep["sessions_by_agent"] == {"claude_code": 1, "codex": 1}
    # The public release as DuckDB with the private JSONL: the same copies.
    db = tmp_path / "syfi_coding_trace.duckdb"
    write_release_duckdb([tracelab / "sanitized_round_trace.jsonl"], db)
    mixed = ingest([db, tracelab / "derived_round_trace.jsonl"])
    assert mixed.report.duplicates_dropped == len(priv) and set(mixed.to_pandas().call_id) == set(priv.call_id)


def test_distinct_rounds_are_not_taken_for_copies(tracelab, tmp_path):
    """A public row whose timestamps moved by 1 ms is another call, not a copy."""
    import json
    from datetime import datetime, timedelta

    def later(ts: str) -> str:
        dt = datetime.fromisoformat(ts.replace("Z", "+00:00")) + timedelta(milliseconds=1)
        return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")

    rows = [json.loads(l) for l in (tracelab / "sanitized_round_trace.jsonl").read_text().splitlines() if l.strip()]
    for r in rows:
        for t in r["tools"]:
            t["emitted_at"], t["result_at"] = later(t["emitted_at"]), later(t["result_at"])
    shifted = tmp_path / "shifted.jsonl"
    shifted.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    res = ingest([shifted, tracelab / "derived_round_trace.jsonl"])
    assert res.report.duplicates_dropped == 0 and len(res.to_pandas()) == 38
