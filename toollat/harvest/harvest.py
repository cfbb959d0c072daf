"""``run_harvest``: build the workspace, play scripted sessions within a time budget, write logs.

The budget covers the whole call: workspace set-up, the calls, the think time between them
(real sleeps of 50-500 ms, as a model takes to answer) and the clean-up, whose time is guessed
as the set-up's (deleting thousands of files costs about what writing them did). No new call
starts once its estimated cost no longer fits the remaining budget; the session in progress is
then written out, so every file is complete and valid. A call that runs longer than estimated,
or a slow clean-up, can still overrun the budget a little; ``seconds`` reports the truth. The temporary directory
(workspace and the children's HOME) is removed in a ``finally``, on success and on error alike.
"""
from __future__ import annotations

import os
import random
import shutil
import stat
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .agent import PlannedCall, SessionPlanner, TurnBreak
from .tools import Outcome, ToolRunner
from .transcript import SessionLog, ts_ms
from .workspace import build_workspace

__all__ = ["HarvestReport", "HarvestedCall", "run_harvest"]

MIN_SESSION_S = 1.0         # no new session starts with less budget than this left
CLEANUP_RESERVE_MAX = 0.1   # at most this share of the budget is kept back for the clean-up
THINK_MIN_S, THINK_MEAN_S, THINK_MAX_S = 0.05, 0.15, 0.5   # model "think time" between calls


@dataclass
class HarvestedCall:
    """One call as the harvest measured it (the report keeps one per call written)."""
    session_id: str
    call_id: str
    message_id: str     # calls emitted in one assistant message share it (a parallel group)
    tool: str
    label: str          # tool, or "Bash:<program>" for shell commands
    started_at: float   # epoch seconds, just before the call started
    ms: float           # perf_counter duration
    wall_ms: int        # result timestamp - emission timestamp, as written (millisecond clock)
    is_error: bool
    timed_out: bool
    refused: bool


@dataclass
class HarvestReport:
    sessions: int = 0
    calls: int = 0
    files: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    min_ms: float | None = None
    max_ms: float | None = None
    timeouts: int = 0
    refused: int = 0
    errors: int = 0                 # error results (timeouts and refusals included)
    seed: int = 0
    budget_s: float = 0.0
    call_timeout_s: float = 0.0
    setup_seconds: float = 0.0      # building the workspace
    cleanup_seconds: float = 0.0    # removing it
    workspace: str = ""             # where the (now removed) workspace was
    workspace_removed: bool = False
    workspace_mb: float = 0.0
    packages: list[str] = field(default_factory=list)
    by_tool: dict[str, int] = field(default_factory=dict)
    harvested: list[HarvestedCall] = field(default_factory=list)

    def add(self, call: HarvestedCall) -> None:
        self.harvested.append(call)
        self.calls += 1
        self.by_tool[call.tool] = self.by_tool.get(call.tool, 0) + 1
        self.errors += call.is_error
        self.timeouts += call.timed_out
        self.refused += call.refused
        self.min_ms = call.ms if self.min_ms is None else min(self.min_ms, call.ms)
        self.max_ms = call.ms if self.max_ms is None else max(self.max_ms, call.ms)

    def to_dict(self, with_calls: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d["files"] = [str(p) for p in self.files]
        if not with_calls:
            del d["harvested"]
        return d


def run_harvest(out_dir: Path, budget_s: float = 120.0, seed: int = 0, progress: bool = False,
                call_timeout_s: float = 30.0) -> HarvestReport:
    """Measure real tool-call latencies on this machine; write Claude Code session logs to ``out_dir``."""
    t_start = time.perf_counter()
    deadline = t_start + budget_s
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    report = HarvestReport(seed=seed, budget_s=budget_s, call_timeout_s=call_timeout_s)
    tmp = Path(tempfile.mkdtemp(prefix="toollat-harvest-")).resolve()
    report.workspace = str(tmp)
    what = f"harvesting for {budget_s:.0f} s"  # the bar counts seconds of the budget
    try:
        with _progress_bar(progress) as bar, ThreadPoolExecutor(max_workers=3) as pool:
            task = bar.add_task(f"{what}: building the scratch workspace", total=budget_s)
            ws = build_workspace(tmp, rng)
            report.setup_seconds = time.perf_counter() - t_start
            deadline -= min(report.setup_seconds, CLEANUP_RESERVE_MAX * budget_s)  # leave time to clean up
            report.workspace_mb = round(ws.total_bytes / 1e6, 1)
            report.packages = [f"{p.origin}:{p.name} ({p.size_class}, {len(p.files)} files)" for p in ws.packages]
            runner = ToolRunner(ws.root, call_timeout_s, home=ws.home)
            while deadline - time.perf_counter() > MIN_SESSION_S:
                planner = SessionPlanner(ws, rng)
                log = SessionLog(str(uuid.uuid4()), tmp, rng)
                try:
                    _play(planner, log, runner, pool, deadline, rng, report, lambda d: bar.update(
                        task, completed=min(time.perf_counter() - t_start, budget_s), description=f"{what}: {d}"))
                finally:
                    # Written even when a session is cut short, so each file is complete as far as it goes.
                    if log.calls:
                        path = out_dir / f"{log.session_id}.jsonl"
                        log.write(path)
                        report.files.append(path)
                        report.sessions += 1
    finally:
        t_cleanup = time.perf_counter()
        _remove_tree(tmp)
        report.cleanup_seconds = time.perf_counter() - t_cleanup
        report.workspace_removed = not tmp.exists()
        report.seconds = time.perf_counter() - t_start
    return report


def _play(planner: SessionPlanner, log: SessionLog, runner: ToolRunner, pool: ThreadPoolExecutor,
          deadline: float, rng: random.Random, report: HarvestReport, show) -> None:
    """Run one session's calls until the planner is done or the budget is used up."""
    log.human(planner.prompt, time.time())
    _think(rng.uniform(0.2, 0.8), deadline)
    while True:
        step = planner.next(deadline - time.perf_counter())
        if step is None:
            break
        if isinstance(step, TurnBreak):
            log.assistant_text(_message_id(), step.text, time.time(), end_turn=True)
            _think(rng.uniform(0.3, 1.0), deadline)   # the human reads and answers
            log.human(step.prompt, time.time())
            _think(_think_time(rng), deadline)
            continue
        message_id = _message_id()
        if rng.random() < 0.2:  # a sentence before the call, in the same message
            log.assistant_text(message_id, "Let me check that.", time.time(), end_turn=False)
        outcomes = _run_step(step, runner, pool)
        done = [(f"toolu_{uuid.uuid4().hex[:24]}", c.name, c.input, out) for c, out in zip(step, outcomes)]
        done.sort(key=lambda d: d[3].started_at)
        log.calls_group(message_id, done)
        for call_id, name, inp, out in done:
            report.add(HarvestedCall(
                session_id=log.session_id, call_id=call_id, message_id=message_id, tool=name, label=_label(name, inp), started_at=out.started_at, ms=out.ms,
                wall_ms=ts_ms(out.ended_at) - ts_ms(out.started_at), is_error=out.is_error,
                timed_out=out.timed_out, refused=out.refused))
        show(f"session {report.sessions + 1}, {report.calls} calls (last {done[-1][1]})")
        _think(_think_time(rng), deadline)
    log.assistant_text(_message_id(), "Done.", time.time(), end_turn=True)


def _run_step(step: list[PlannedCall], runner: ToolRunner, pool: ThreadPoolExecutor) -> list[Outcome]:
    if len(step) == 1:
        return [runner.run(step[0].name, step[0].input)]
    # Read-only calls of one message run concurrently, as Claude Code runs them.
    futures = [pool.submit(runner.run, c.name, c.input) for c in step]
    return [f.result() for f in futures]


def _think_time(rng: random.Random) -> float:
    """Mostly short (a model answering after a result), now and then up to half a second."""
    return min(THINK_MIN_S + rng.expovariate(1.0 / (THINK_MEAN_S - THINK_MIN_S)), THINK_MAX_S)


def _think(seconds: float, deadline: float) -> None:
    time.sleep(max(min(seconds, deadline - time.perf_counter()), 0.0))


def _message_id() -> str:
    return f"msg_{uuid.uuid4().hex[:24]}"


def _label(name: str, inp: dict[str, Any]) -> str:
    """The tool, or for Bash what runs: ``Bash:git status``, ``Bash:pytest``, ``Bash:python -c``."""
    if name != "Bash":
        return name
    words = str(inp.get("command", "")).split()
    if not words:
        return "Bash"
    if words[0] == "git" and len(words) > 1:
        return f"Bash:git {words[1]}"
    if words[0] == "python" and len(words) > 2:
        return f"Bash:{words[2]}" if words[1] == "-m" else "Bash:python -c"
    return f"Bash:{words[0]}"


def _remove_tree(path: Path) -> None:
    """Remove the temporary tree, making read-only entries (git objects) writable if needed."""
    def retry(func, p, _exc):
        os.chmod(p, stat.S_IWRITE | stat.S_IREAD | stat.S_IEXEC)
        func(p)

    if path.exists():
        shutil.rmtree(path, onerror=retry)


def _progress_bar(enabled: bool):
    from toollat.progress import progress_bar

    return progress_bar(enabled)
