"""Ingest on a Dask cluster: files read on the workers, one table, a Parquet dataset by source.

``ingest_on_cluster(paths, out_dir, address)`` splits the input files into contiguous groups of
about equal bytes, and each worker reads a group with the same readers as ``ingest`` (the
costly part: decompressing, decoding, pairing calls with results, redacting) and sends back
the group's rows and file reports. The driver concatenates the groups in file order and runs
the same ``finalize`` as the single-process ingest on them, so the table is the single-process
table row for row: copies of forked sessions are dropped by ``call_id`` across every group
(keeping the first read in file order), TraceLab private/public copies by their copy key, and
``seq``/parallel groups/subagent links computed over whole sessions. The finished table is
written as one Parquet file per source (``DIR/part-<source>.parquet``), all with the canonical
schema: ``read_calls``, ``pd.read_parquet(DIR)``, ``pyarrow.dataset.dataset(DIR)`` and DuckDB's
``read_parquet('DIR/*.parquet')`` read it as one table.

``address`` is a scheduler (``tcp://host:8786``) or ``local[:N]``: a LocalCluster of N worker
processes on this machine (default 2). Every worker must be able to read the input paths.
"""
from __future__ import annotations

import os
import shutil
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from .base import ReadContext
from .files import MAX_LINE_BYTES, InputFile, discover
from .report import FileReport, IngestReport
from .table import SCHEMA, finalize

GROUPS_PER_WORKER = 4  # several tasks per worker, so one big file does not leave the others idle


def client_for(address: str):
    """A ``distributed.Client`` for a scheduler address, or for a new LocalCluster (``local[:N]``)."""
    from distributed import Client, LocalCluster

    if address == "local" or address.startswith("local:"):
        n = int(address.partition(":")[2] or 2)
        if n < 1:
            raise ValueError("local:N needs N >= 1 workers")
        cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster)
    return Client(address)


def group_files(files: list[InputFile], n_groups: int) -> list[list[InputFile]]:
    """Contiguous groups of about equal total bytes (contiguous keeps file order on concatenation)."""
    sizes = [max(f.path.stat().st_size, 1) for f in files]
    target = sum(sizes) / max(n_groups, 1)
    groups: list[list[InputFile]] = [[]]
    acc = 0.0
    for f, size in zip(files, sizes):
        if groups[-1] and acc + size / 2 > target * len(groups) and len(groups) < n_groups:
            groups.append([])
        groups[-1].append(f)
        acc += size
    return [g for g in groups if g]


def read_group(files: list[InputFile], redact: bool, max_line_bytes: int) -> tuple[pd.DataFrame, list[FileReport], Counter]:
    """What a worker does: read a group of files; their rows as one frame, their reports."""
    from . import read_file

    ctx = ReadContext(redact=redact, max_line_bytes=max_line_bytes)
    reports, rows = [], []
    for f in files:
        fr, file_rows = read_file(f, ctx)
        reports.append(fr)
        rows.extend(file_rows)
    return pd.DataFrame.from_records(rows), reports, ctx.redactions


def ingest_on_cluster(paths: Sequence[str | Path], client, redact: bool = True,
                      max_line_bytes: int = MAX_LINE_BYTES) -> tuple[pa.Table, IngestReport]:
    """The single-process ingest's table and report, with the files read on ``client``'s workers."""
    from . import summarize

    started = time.perf_counter()
    # Absolute on the driver: a worker's working directory is not the driver's (another machine,
    # or a `dask worker` started elsewhere), so `logs/` would be looked up there and not found.
    files = discover([Path(p).expanduser().absolute() for p in paths])
    report = IngestReport(redacted=redact)
    n_workers = max(len(client.nthreads()), 1)
    groups = group_files(files, n_workers * GROUPS_PER_WORKER)
    futures = client.map(read_group, groups, redact=redact, max_line_bytes=max_line_bytes, pure=False)
    frames = []
    for frame, reports, redactions in client.gather(futures):  # in group order = file order
        frames.append(frame)
        report.files.extend(reports)
        report.redactions.update(redactions)
    frames = [f for f in frames if len(f)]
    rows = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    table = finalize(rows, report)
    summarize(table, report)
    report.seconds = time.perf_counter() - started
    return table, report


def write_dataset(table: pa.Table, out_dir: str | Path) -> None:
    """The table as one Parquet file per source (``part-<source>.parquet``), every file with the
    canonical schema, so pandas, ``pyarrow.dataset`` and DuckDB read the directory as one table
    (no ``key=value`` folders: a reader would add a ``source`` partition column of another type).
    Replaces ``out_dir`` only once it is complete: written into a temp directory beside it and
    renamed into place; an earlier dataset there is moved aside first and removed after, so a
    kill leaves either the old or the new one.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.tmp")
    old = out_dir.with_name(f".{out_dir.name}.{os.getpid()}.old")
    shutil.rmtree(tmp, ignore_errors=True)
    table = table.cast(SCHEMA).replace_schema_metadata(None)   # one schema in every file
    try:
        tmp.mkdir()
        sources = table.column("source").to_pandas()
        for source in sorted(sources.dropna().unique()):
            pq.write_table(table.filter(pc.equal(table.column("source"), source)),
                           tmp / f"part-{_safe(source)}.parquet", compression="zstd")
        if sources.isna().any():
            pq.write_table(table.filter(pc.is_null(table.column("source"))), tmp / "part-__null__.parquet",
                           compression="zstd")
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _safe(name: str) -> str:
    """A source name as one path component (the value itself is kept in the file's column)."""
    from urllib.parse import quote

    return quote(str(name), safe="") or "_"
