"""Where training and evaluation calls come from, and the order a default is resolved in.

``resolve(kind, paths)`` picks a source and says why; ``load`` reads it into the canonical table.
With ``kind="auto"`` the order is (README "Data sources"):

1. explicit paths (logs, directories, TraceLab files or a canonical ``.parquet``);
2. the user's own agent logs (``~/.claude/projects``, ``~/.codex/sessions``);
3. the shared corpus (``$TOOLLAT_CORPUS`` or ``../shared/data/sessions``);
4. the demo corpus: real timings harvested on this machine (``toollat harvest``), built on
   first use and cached under ``~/.cache/toollat/demo``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from toollat.ingest import IngestReport, load_calls
from toollat.ingest.local import find_local_logs, local_log_dirs
from toollat.paths import cache_dir, corpus_dir

KINDS = ("auto", "corpus", "local", "tracelab", "parquet", "demo")


@dataclass
class DataSource:
    kind: str            # what was chosen: explicit | local | corpus | demo | tracelab | parquet
    paths: list[Path]
    reason: str          # one line for the run log


class NoDataError(RuntimeError):
    pass


def demo_dir() -> Path:
    return cache_dir() / "demo"


def resolve(kind: str = "auto", paths: Sequence[str | Path] | None = None) -> DataSource:
    if kind not in KINDS:
        raise ValueError(f"unknown data kind {kind!r}; one of {KINDS}")
    explicit = [Path(p).expanduser() for p in (paths or [])]
    if explicit:
        missing = [str(p) for p in explicit if not p.exists()]
        if missing:
            raise NoDataError(f"data paths do not exist: {', '.join(missing)}")
        chosen = "explicit" if kind == "auto" else kind
        return DataSource(chosen, explicit, f"{chosen} data paths: {', '.join(map(str, explicit))}")
    if kind in ("tracelab", "parquet"):
        raise NoDataError(f"data={kind} needs data.paths=[...]")
    if kind in ("auto", "local"):
        local = find_local_logs()
        if local:
            return DataSource("local", local, f"your own agent logs in {', '.join(map(str, local))}")
        if kind == "local":
            raise NoDataError("no local agent logs found; looked in " + ", ".join(map(str, local_log_dirs())))
    if kind in ("auto", "corpus"):
        corpus = corpus_dir()
        if corpus.is_dir():
            why = "no local agent logs found; " if kind == "auto" else ""
            return DataSource("corpus", [corpus], f"{why}the shared corpus at {corpus}")
        if kind == "corpus":
            raise NoDataError(f"the shared corpus is not at {corpus} (set TOOLLAT_CORPUS or TOOLLAT_SHARED)")
    demo = demo_dir()
    return DataSource("demo", [demo], f"no local agent logs and no shared corpus; the demo corpus harvested on this machine at {demo}")


def load(source: DataSource, redact: bool = True, progress: bool = False, harvest_budget_s: float = 120.0) -> tuple[pd.DataFrame, IngestReport | None]:
    """The canonical table for a source; the demo corpus is harvested first if it is not cached."""
    if source.kind == "demo":
        ensure_demo(harvest_budget_s, progress)
    return load_calls(source.paths, redact=redact, progress=progress)


def ensure_demo(budget_s: float = 120.0, progress: bool = False) -> Path:
    """Harvest the demo corpus once (real timings of scripted sessions on this machine)."""
    d = demo_dir()
    if d.is_dir() and any(d.glob("*.jsonl")):
        return d
    from toollat.harvest import run_harvest

    d.mkdir(parents=True, exist_ok=True)
    run_harvest(d, budget_s=budget_s, progress=progress)
    return d
