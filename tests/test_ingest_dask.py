"""Ingest on a Dask LocalCluster of 2 worker processes gives the single-process table, row for row."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest

from conftest import SMALL_CODEX, SMALL_SOURCE
from toollat.ingest import ingest, load_calls
from toollat.ingest.cluster import client_for, group_files, ingest_on_cluster, write_dataset
from toollat.ingest.files import discover


@pytest.fixture(scope="module")
def client():
    with client_for("local:2") as c:
        yield c
        c.cluster.close()


@pytest.fixture(scope="module")
def slice_paths(corpus, tracelab):
    # A Claude Code source with forked sessions, Codex rollouts, unsupported files (Copilot logs)
    # and TraceLab's private and public forms of the same rounds: every de-duplication rule.
    return [corpus / "JanDeDobbeleer__oh-my-posh", corpus / SMALL_CODEX.split("/")[0], tracelab]


def test_cluster_ingest_equals_single_process(client, slice_paths, tmp_path):
    single = ingest(slice_paths)
    table, report = ingest_on_cluster(slice_paths, client)
    assert len(client.nthreads()) == 2
    a = single.to_pandas().sort_values("call_id").reset_index(drop=True)
    b = table.to_pandas().sort_values("call_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    assert a.exec_started_at.notna().sum() == 9  # agentv's Claude Code Bash calls with bash_progress records
    assert single.report.duplicates_dropped > 1000  # forked-session copies (across groups) and the TraceLab ones
    d1, d2 = single.report.to_dict(), report.to_dict()
    for d in (d1, d2):
        d.pop("seconds")
    assert d1 == d2  # the summary aggregated from the workers' file reports

    # The dataset (one file per source) reads back as the canonical table, in table order.
    write_dataset(table, tmp_path / "calls")
    assert sorted(p.name for p in (tmp_path / "calls").iterdir()) == sorted(
        f"part-{s}.parquet" for s in set(a.source))
    back, _ = load_calls([tmp_path / "calls"])
    pd.testing.assert_frame_equal(back, single.to_pandas())

    # ... and as one table, the single-process one, by pandas, pyarrow.dataset and DuckDB alike
    # (one schema in every file; no key=value folders a reader would turn into a column).
    import duckdb
    import pyarrow.dataset as ds

    from toollat.ingest.table import SCHEMA

    def same(t: pa.Table) -> None:
        got = t.select(SCHEMA.names).cast(SCHEMA).to_pandas().sort_values(["session_id", "seq"], kind="stable")
        pd.testing.assert_frame_equal(got.reset_index(drop=True), single.to_pandas())

    same(pa.Table.from_pandas(pd.read_parquet(tmp_path / "calls"), preserve_index=False))
    same(ds.dataset(tmp_path / "calls", format="parquet").to_table())
    same(duckdb.sql(f"SELECT * FROM read_parquet('{tmp_path / 'calls'}/*.parquet')").to_arrow_table())
    assert pd.read_parquet(tmp_path / "calls").dtypes.equals(single.to_pandas().dtypes)


def test_groups_keep_file_order_and_cover_every_file(corpus):
    files = discover([corpus / SMALL_SOURCE])
    groups = group_files(files, 8)
    assert [f for g in groups for f in g] == files and 1 < len(groups) <= 8


def test_cli_dask_writes_a_dataset(corpus, tmp_path):
    out = tmp_path / "calls"
    src = corpus / SMALL_CODEX
    proc = subprocess.run([sys.executable, "-m", "toollat.cli", "ingest", src, "--out", out, "--dask", "local:2", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    df, _ = load_calls([out])
    assert len(df) == summary["calls"] == len(ingest([src]).table)
    bad = subprocess.run([sys.executable, "-m", "toollat.cli", "ingest", src, "--out", tmp_path / "x.parquet", "--dask", "local:2"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--out is a directory" in bad.stderr


class _WorkersElsewhere:
    """A client whose workers run in another working directory (as on a remote machine)."""

    def __init__(self, cwd):
        self.cwd = cwd

    def nthreads(self):
        return {"worker": 1}

    def map(self, fn, groups, pure=False, **kwargs):
        here = os.getcwd()
        os.chdir(self.cwd)
        try:
            return [fn(g, **kwargs) for g in groups]
        finally:
            os.chdir(here)

    def gather(self, futures):
        return futures


def test_relative_paths_are_read_by_workers_in_another_directory(corpus, tmp_path, monkeypatch):
    # `toollat ingest logs/ --dask tcp://...`: a worker's working directory is not the driver's, so
    # a relative path must reach the workers resolved on the driver.
    src = corpus / SMALL_CODEX
    monkeypatch.chdir(src.parent)
    worker_dir = tmp_path / "worker"
    worker_dir.mkdir()
    table, report = ingest_on_cluster([Path(src.name)], _WorkersElsewhere(worker_dir))
    single = ingest([Path(src.name)])
    assert table.num_rows == single.table.num_rows > 0
    assert report.to_dict()["files_by_format"] == single.report.to_dict()["files_by_format"]
