"""Run a default-budget harvest on this machine and write results.md beside this file.

    .venv/bin/python experiments/harvest/run.py [--budget 120] [--seed 0] [--out DIR]

The session logs go to a temporary folder that is deleted afterwards, unless ``--out`` names
a folder to keep them in. The logs are read back with ``toollat.ingest`` as a check.
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path

from toollat.harvest import HarvestReport, run_harvest
from toollat.ingest import ingest

HERE = Path(__file__).resolve().parent


def quantile(values: list[float], q: float) -> float:
    vs = sorted(values)
    return vs[min(int(q * len(vs)), len(vs) - 1)]


def fmt_ms(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 1 else f"{v:.2f}"


def table(groups: dict[str, list[float]]) -> list[str]:
    lines = ["| calls of | n | min ms | p10 | p50 | p90 | max ms |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, ms in sorted(groups.items(), key=lambda kv: statistics.median(kv[1])):
        lines.append(f"| {name} | {len(ms)} | {fmt_ms(min(ms))} | {fmt_ms(quantile(ms, .1))} | "
                     f"{fmt_ms(quantile(ms, .5))} | {fmt_ms(quantile(ms, .9))} | {fmt_ms(max(ms))} |")
    return lines


def write_results(report: HarvestReport, ingest_calls: int, ingest_unbalanced: list[str], wall_mismatch: int,
                  total_s: float, log_bytes: int) -> str:
    by_tool: dict[str, list[float]] = defaultdict(list)
    by_label: dict[str, list[float]] = defaultdict(list)
    for c in report.harvested:
        by_tool[c.tool].append(c.ms)
        by_label[c.label].append(c.ms)
    all_ms = [c.ms for c in report.harvested]
    per_message = Counter(c.message_id for c in report.harvested)
    groups = sum(1 for n in per_message.values() if n > 1)
    in_groups = sum(n for n in per_message.values() if n > 1)
    floor10 = [max(v, 10.0) for v in all_ms]
    lines = [
        "# Harvest results",
        "",
        f"Written by `experiments/harvest/run.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        f"- budget {report.budget_s:g} s, seed {report.seed}, per-call timeout {report.call_timeout_s:g} s",
        f"- took **{report.seconds:.1f} s** in all ({report.setup_seconds:.1f} s to build the workspace, "
        f"{report.cleanup_seconds:.1f} s to delete it, "
        f"{report.workspace_mb} MB of source: {', '.join(report.packages)}); run.py with the read-back: {total_s:.1f} s",
        f"- **{report.calls} calls** in {report.sessions} sessions; {report.errors} error results, "
        f"{report.timeouts} timeouts, {report.refused} refused; {groups} parallel groups holding {in_groups} calls; "
        f"{log_bytes / 1e6:.1f} MB of session logs",
        f"- latency range **{fmt_ms(report.min_ms)} ms to {fmt_ms(report.max_ms)} ms**: "
        f"{math.log10(report.max_ms / report.min_ms):.1f} orders of magnitude "
        f"({math.log10(max(floor10) / min(floor10)):.1f} with the evaluation's 10 ms floor)",
        f"- quantiles over all calls: p10 {fmt_ms(quantile(all_ms, .1))} ms, p50 {fmt_ms(quantile(all_ms, .5))} ms, "
        f"p90 {fmt_ms(quantile(all_ms, .9))} ms, p99 {fmt_ms(quantile(all_ms, .99))} ms",
        f"- read back with `toollat.ingest`: {ingest_calls} calls, unbalanced files: {ingest_unbalanced or 'none'}, "
        f"calls whose `wall_ms` differs from the harvest's timing by more than 1 ms: {wall_mismatch}",
        f"- workspace removed afterwards: {report.workspace_removed}",
        "",
        "Latencies are wall-clock durations measured around each call (`perf_counter`); the logs' "
        "timestamps carry the same numbers at millisecond precision.",
        "",
        "## By tool",
        "",
        *table(by_tool),
        "",
        "## By tool and shell program",
        "",
        *table(by_label),
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget", type=float, default=120.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None, help="keep the session logs here")
    ap.add_argument("--results", type=Path, default=HERE / "results.md")
    args = ap.parse_args()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="harvest-logs-") as tmp:
        out = args.out or Path(tmp)
        report = run_harvest(out, budget_s=args.budget, seed=args.seed, progress=sys.stderr.isatty())
        res = ingest([out])
        df = res.to_pandas()
        mine = {c.call_id: c.ms for c in report.harvested}
        mismatch = int(sum(abs(w - mine.get(cid, float("inf"))) > 1.0 for cid, w in zip(df["call_id"], df["wall_ms"])))
        log_bytes = sum(p.stat().st_size for p in report.files)
        text = write_results(report, len(df), res.report.unbalanced(), mismatch, time.perf_counter() - started, log_bytes)
    args.results.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
