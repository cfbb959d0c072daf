"""Ingest: agent logs -> the canonical calls table (see ``table.py`` for its columns).

``ingest(paths)`` walks files and directories, detects each file's format by content
(``registry.py``), reads it with its reader, and assembles one table. Every line of every file
is accounted for in the returned ``IngestReport``. ``load_calls(paths)`` is what the rest of
toollat uses: it takes raw logs, directories, a canonical Parquet table or a dataset directory
written by ``ingest --dask`` (``cluster.py``) alike.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa

from .base import ReadContext
from toollat.core.families import FAMILIES, tool_family
from .files import MAX_LINE_BYTES, InputFile, discover
from .registry import detect
from .report import FileReport, IngestReport
from .table import COLUMNS, SCHEMA, CorruptCallsFile, finalize, is_calls_dataset, is_calls_parquet, read_calls, write_calls

__all__ = [
    "FAMILIES", "COLUMNS", "SCHEMA", "CorruptCallsFile", "IngestReport", "IngestResult", "ingest", "load_calls",
    "read_calls", "tool_family", "write_calls",
]


@dataclass
class IngestResult:
    table: pa.Table
    report: IngestReport

    def to_pandas(self) -> pd.DataFrame:
        return self.table.to_pandas()


def ingest(paths: Sequence[str | Path], redact: bool = True, progress: bool = False,
           max_line_bytes: int = MAX_LINE_BYTES) -> IngestResult:
    """Read agent logs (files or directories, any supported format, gzip or not).

    Lines longer than ``max_line_bytes`` are skipped (counted as "line too long") unread.
    """
    started = time.perf_counter()
    files = discover([Path(p) for p in paths])
    report = IngestReport(redacted=redact)
    ctx = ReadContext(redact=redact, redactions=report.redactions, max_line_bytes=max_line_bytes)
    rows: list[dict] = []
    bar = _progress(progress)
    with bar:
        task = bar.add_task("reading logs", total=len(files))
        for f in files:
            fr, file_rows = read_file(f, ctx)
            report.files.append(fr)
            rows.extend(file_rows)
            bar.update(task, advance=1, description=f"reading {f.display[-50:]}")
    table = finalize(rows, report)
    summarize(table, report)
    report.seconds = time.perf_counter() - started
    return IngestResult(table, report)


def read_file(f: InputFile, ctx: ReadContext) -> tuple[FileReport, list[dict]]:
    """One file's rows (reader fields, before ``finalize``) and its report."""
    fr = FileReport(path=f.display, source=f.source)
    reader, what = detect(f.path, ctx.max_line_bytes)
    rows: list[dict] = []
    if reader is None:
        fr.unsupported = what
        _count_unsupported_lines(f.path, fr, what)
    else:
        fr.format = reader.name
        for row in reader.read(f, fr, ctx):
            row.setdefault("source", f.source)
            row["format"] = reader.name
            rows.append(row)
    return fr, rows


def summarize(table: pa.Table, report: IngestReport) -> None:
    """Calls and sessions by agent, from the finished table."""
    if table.num_rows:
        agent = table.column("agent").to_pandas()
        sessions = table.select(["agent", "session_id"]).to_pandas().drop_duplicates()
        report.calls_by_agent = {k: int(v) for k, v in agent.value_counts().items()}
        report.sessions_by_agent = {k: int(v) for k, v in sessions["agent"].value_counts().items()}


def _count_unsupported_lines(path: Path, fr: FileReport, what: str | None) -> None:
    """Unsupported files are skipped whole; their lines are counted under that reason."""
    from .files import BAD_GZIP_ERRORS, count_lines

    n = 0
    if what not in ("binary file", "empty file") and not (what or "").startswith("unreadable"):
        try:
            n = count_lines(path)
        except BAD_GZIP_ERRORS:
            pass
    fr.lines = n
    if n:
        fr.skip(f"unsupported file: {what}", n)


def load_calls(paths: Sequence[str | Path], redact: bool = True, progress: bool = False,
               max_line_bytes: int = MAX_LINE_BYTES) -> tuple[pd.DataFrame, IngestReport | None]:
    """Calls from canonical Parquet tables and/or anything ``ingest`` reads, as one DataFrame."""
    parquet = [Path(p) for p in paths if (Path(p).is_file() and is_calls_parquet(Path(p))) or is_calls_dataset(Path(p))]
    raw = [p for p in paths if Path(p) not in parquet]
    frames = [read_calls(p) for p in parquet]
    report = None
    if raw:
        result = ingest(raw, redact=redact, progress=progress, max_line_bytes=max_line_bytes)
        frames.append(result.to_pandas())
        report = result.report
    if not frames:
        return SCHEMA.empty_table().to_pandas(), report
    df = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    if len(frames) > 1:
        df = df.drop_duplicates("call_id", keep="first").reset_index(drop=True)
    return df, report


def _progress(enabled: bool):
    from toollat.progress import progress_bar

    return progress_bar(enabled)
