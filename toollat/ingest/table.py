"""The canonical calls table (docs/ARCHITECTURE.md): its columns, how rows become it, and Parquet I/O.

One row per tool call that has both an emission and a result. Readers produce row dicts with
the *reader fields* below; ``finalize`` adds the table-level columns (``seq``, ``wall_ms``,
``tool_family``, parallel-group sizes, subagent links), drops calls already read from another
file (forked and resumed sessions copy their history, ids and all) and returns an Arrow table.

Timestamps are UTC, millisecond precision. Columns that later stages rely on for causality:
``seq`` (emission order in the session), ``parallel_group`` (calls emitted in one model
message), ``emitted_at`` and ``result_at``. ``turn_started_at`` / ``prev_turn_ended_at`` are
known when a call is emitted (the human message that opened its turn, and the end of the turn
before it); the simulator uses them for human gaps.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from toollat.core.families import tool_family
from .report import IngestReport

_TS = pa.timestamp("ms", tz="UTC")

SCHEMA = pa.schema([
    ("call_id", pa.string()),            # the agent's own call id; unique in the table
    ("source", pa.string()),             # where the log came from (corpus repo / project folder)
    ("agent", pa.string()),              # claude_code | codex
    ("format", pa.string()),             # the reader that parsed it
    ("session_id", pa.string()),
    ("project", pa.string()),            # last folder of the session's working directory
    ("model", pa.string()),
    ("seq", pa.int32()),                 # emission order within the session, from 0
    ("tool_name", pa.string()),
    ("tool_family", pa.string()),
    ("args", pa.string()),               # tool input as JSON text (null in public TraceLab rows)
    ("input_chars", pa.int64()),
    ("emitted_at", _TS),
    ("result_at", _TS),
    ("wall_ms", pa.float64()),           # result_at - emitted_at: what the serving engine waits
    ("internal_ms", pa.float64()),       # runner-reported duration, where the log has it
    ("is_error", pa.bool_()),
    ("interrupted", pa.bool_()),         # the user interrupted or rejected the call
    ("exit_code", pa.int32()),
    ("result_chars", pa.int64()),
    ("parallel_group", pa.string()),     # calls emitted in the same model message
    ("parallel_size", pa.int16()),
    ("parallel_index", pa.int16()),
    ("is_sidechain", pa.bool_()),        # emitted by a subagent
    ("agent_id", pa.string()),           # the subagent that emitted it (sidechain calls)
    ("spawned_agent_id", pa.string()),   # the subagent a Task/Agent call ran
    ("parent_call_id", pa.string()),     # the Task/Agent call whose subagent emitted this call
    ("poll_of", pa.string()),            # Codex write_stdin: the exec_command call it polls
    ("context_tokens", pa.int64()),      # input tokens of the request that emitted the call
    ("output_tokens", pa.int64()),
    ("permission_mode", pa.string()),    # approval / permission mode in force at emission
    ("turn_index", pa.int32()),          # human turns before this call in the session
    ("turn_started_at", _TS),            # the human message that opened this call's turn
    ("prev_turn_ended_at", _TS),         # last agent activity before that human message
    ("origin", pa.string()),             # file:line of the emission record
])

COLUMNS: list[str] = SCHEMA.names

# Fields a reader sets; the rest are computed by ``finalize``.
READER_DEFAULTS: dict[str, Any] = {
    "call_id": None, "agent": None, "session_id": None, "project": None, "model": None,
    "tool_name": None, "args": None, "input_chars": None, "emitted_at": None, "result_at": None,
    "internal_ms": None, "is_error": False, "interrupted": False, "exit_code": None,
    "result_chars": None, "parallel_group": None, "is_sidechain": False, "agent_id": None,
    "spawned_agent_id": None, "poll_of": None, "context_tokens": None, "output_tokens": None,
    "permission_mode": None, "turn_index": 0, "turn_started_at": None,
    "prev_turn_ended_at": None, "origin": None,
}


# Row field (not a column) by which readers mark calls that can be copies under other ids.
COPY_KEY = "_copy_key"


def empty_table() -> pa.Table:
    return SCHEMA.empty_table()


def drop_copies(df: pd.DataFrame, report: IngestReport) -> pd.DataFrame:
    """Keep each call once; count the copies in ``report``.

    Forked and resumed sessions repeat their history with the same call ids: the first read
    (``_order``: file order, then line order) is kept. TraceLab's private and public forms of
    one round carry different (pseudonymized) ids, so TraceLab rows also carry ``COPY_KEY``
    (what pseudonymization leaves alone); of a key's copies the one with arguments is kept.
    """
    dup = df["call_id"].duplicated(keep="first")
    dropped = df.loc[dup, "agent"]
    df = df.loc[~dup]
    if COPY_KEY in df.columns and df[COPY_KEY].notna().any():
        keyed = df.loc[df[COPY_KEY].notna(), [COPY_KEY, "args", "_order"]]
        keyed = keyed.assign(_no_args=keyed["args"].isna()).sort_values([COPY_KEY, "_no_args", "_order"], kind="stable")
        copies = keyed.index[keyed.duplicated(COPY_KEY, keep="first")]
        if len(copies):
            report.table_notes["TraceLab private and public forms of the same call (kept the one with arguments)"] += len(copies)
            dropped = pd.concat([dropped, df.loc[copies, "agent"]])
            df = df.drop(index=copies)
    report.duplicates_dropped += len(dropped)
    by_agent = dict(report.duplicates_by_agent)
    for k, v in dropped.value_counts().items():
        by_agent[k] = by_agent.get(k, 0) + int(v)
    report.duplicates_by_agent = by_agent
    return df


def finalize(rows: list[dict[str, Any]] | pd.DataFrame, report: IngestReport) -> pa.Table:
    """Rows from all readers (dicts, or frames of them concatenated in file order) -> the canonical table."""
    if len(rows) == 0:
        return empty_table()
    df = rows.reset_index(drop=True) if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(rows)
    df["_order"] = np.arange(len(df))

    df = drop_copies(df, report)

    df["wall_ms"] = (df["result_at"] - df["emitted_at"]).astype("float64")
    negative = df["wall_ms"] < 0
    if negative.any():  # clock skew between records: count it, never drop the call
        report.table_notes["negative wall latency set to 0 (clock skew)"] += int(negative.sum())
        df.loc[negative, "wall_ms"] = 0.0
    df["tool_family"] = df["tool_name"].map(tool_family)

    df = df.sort_values(["session_id", "emitted_at", "_order"], kind="stable")
    df["seq"] = df.groupby("session_id", sort=False).cumcount()
    grp = df.groupby(["session_id", "parallel_group"], sort=False, dropna=False)
    df["parallel_size"] = grp["call_id"].transform("size")
    df["parallel_index"] = grp.cumcount()

    # Subagent calls point at the Task/Agent call that ran their subagent.
    spawned = df.dropna(subset=["spawned_agent_id"]).drop_duplicates("spawned_agent_id")
    parent_of = dict(zip(spawned["spawned_agent_id"], spawned["call_id"]))
    df["parent_call_id"] = df["agent_id"].map(parent_of) if parent_of else None

    df = df[COLUMNS].reset_index(drop=True)
    arrays = []
    for f in SCHEMA:
        if pa.types.is_timestamp(f.type):  # epoch ms from the readers
            arrays.append(pa.array(df[f.name], type=pa.int64(), from_pandas=True).cast(f.type))
        else:
            arrays.append(pa.array(df[f.name], type=f.type, from_pandas=True))
    return pa.Table.from_arrays(arrays, schema=SCHEMA)


class CorruptCallsFile(ValueError):
    """A calls table that cannot be read: truncated, damaged, or not Parquet despite its name."""


def write_calls(table: pa.Table, path: str | Path) -> None:
    """Write the table atomically: a temp file beside ``path``, synced, then renamed over it.

    A crash or SIGKILL mid-write leaves the previous file as it was (and at worst a stale
    ``.<name>.<pid>.tmp`` beside it), never a half-written table under the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as fh:
            pq.write_table(table, fh, compression="zstd")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    """Make the rename itself durable (a power cut after it keeps the new name)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems refuse fsync on a directory; the rename still happened
        pass
    finally:
        os.close(fd)


def read_calls(path: str | Path) -> pd.DataFrame:
    """A canonical Parquet table as a DataFrame.

    Raises ``CorruptCallsFile`` if the file cannot be read as Parquet, ``ValueError`` if it is
    Parquet but lacks columns of the calls table.
    """
    if Path(path).is_dir():
        return _read_dataset(Path(path))
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as e:
        raise CorruptCallsFile(f"corrupt file: {path} cannot be read as a Parquet calls table ({e})") from None
    missing = [c for c in COLUMNS if c not in table.column_names]
    if missing:
        raise ValueError(f"{path} is not a toollat calls table: missing columns {missing}")
    return table.to_pandas()


def _read_dataset(path: Path) -> pd.DataFrame:
    """A dataset written by ``ingest --dask`` (one file per source) as the canonical table:
    its parts concatenated and put back in table order (session, then ``seq``)."""
    parts = dataset_parts(path)
    frames = []
    for part in parts:
        try:
            frames.append(read_calls(part))
        except CorruptCallsFile as e:
            raise CorruptCallsFile(f"corrupt file in dataset {path}: {e}") from None
    if not frames:
        return SCHEMA.empty_table().to_pandas()
    df = pd.concat(frames, ignore_index=True)[COLUMNS]
    return df.sort_values(["session_id", "seq"], kind="stable").reset_index(drop=True)


def dataset_parts(path: Path) -> list[Path]:
    """The Parquet parts of a calls dataset directory (``source=<name>/part-*.parquet``)."""
    return sorted(path.glob("source=*/part-*.parquet"))


def is_calls_dataset(path: Path) -> bool:
    return path.is_dir() and bool(dataset_parts(path))


def is_calls_parquet(path: Path) -> bool:
    """True if ``path`` is meant as a Parquet table: magic ``PAR1``, or a ``.parquet`` name.

    A truncated or emptied ``.parquet`` file then fails loudly as corrupt in ``read_calls``
    instead of being read as an unsupported log with no calls in it.
    """
    if path.suffix.lower() == ".parquet":
        return True
    try:
        with open(path, "rb") as fh:
            return fh.read(4) == b"PAR1"
    except OSError:
        return False
