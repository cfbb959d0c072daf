"""Time `toollat ingest` on the whole shared corpus; writes results.md beside this file."""
from __future__ import annotations

import gzip
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson

from toollat.ingest import ingest
from toollat.ingest.files import discover, open_binary
from toollat.paths import corpus_dir

HERE = Path(__file__).resolve().parent
RUNS = 3


def time_command(corpus: Path, out: Path) -> list[float]:
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "toollat.cli", "ingest", str(corpus), "--out", str(out), "--json"],
                       check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return times


def decode_floor(corpus: Path) -> int:
    n = 0
    for f in discover([corpus]):
        with open_binary(f.path) as fh:
            for line in fh:
                try:
                    orjson.loads(line)
                    n += 1
                except orjson.JSONDecodeError:
                    pass
    return n


def main() -> None:
    corpus = corpus_dir()
    if not corpus.is_dir():
        sys.exit(f"shared corpus not found at {corpus}")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "calls.parquet"
        cmd = time_command(corpus, out)
        size = out.stat().st_size
    lib, floor = [], []
    for _ in range(RUNS):
        t = time.perf_counter()
        result = ingest([corpus])
        lib.append(time.perf_counter() - t)
        t = time.perf_counter()
        decode_floor(corpus)
        floor.append(time.perf_counter() - t)
    d = result.report.to_dict()
    ratio = statistics.median(lib) / statistics.median(floor)
    lines = [
        "# Ingest speed: results",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}. "
        f"Corpus: {corpus} ({d['files']} files, {d['lines']:,} lines).",
        "",
        "| what | best s | median s |",
        "|---|---|---|",
        f"| `toollat ingest <corpus> --out calls.parquet` (subprocess, end to end) | {min(cmd):.2f} | {statistics.median(cmd):.2f} |",
        f"| `toollat.ingest.ingest([corpus])` (in process) | {min(lib):.2f} | {statistics.median(lib):.2f} |",
        f"| floor: gunzip + orjson.loads of every line, same files | {min(floor):.2f} | {statistics.median(floor):.2f} |",
        "",
        f"Ingest costs **{ratio:.1f}x** the decode floor (median/median, same process). "
        f"Target: under 120 s end to end; measured {statistics.median(cmd):.1f} s.",
        "",
        f"Output: {sum(d['calls_by_agent'].values()):,} calls ({json.dumps(d['calls_by_agent'])}), "
        f"{d['duplicates_dropped']:,} copies dropped (forked/resumed sessions), Parquet {size/1e6:.1f} MB; "
        f"{d['calls_without_result']} calls without a result, {d['results_without_call']} results without a call, "
        f"{len(d['unsupported'])} unsupported files.",
        "",
        "Rerun: `.venv/bin/python experiments/ingest_speed/run.py`",
    ]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
