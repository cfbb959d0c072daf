"""The one progress display every long step uses (ingest, embedding, harvest, online replay, the
steps of a training run), on stderr; nothing at all when disabled (``--json``, ``--quiet``,
``progress=false``).

- In a terminal: a rich bar (``progress_bar``) or, for a step of unknown length (``step``), a
  spinner with the elapsed time; gone when done. Bars may nest (a step's embedding bar).
- Elsewhere (a log file, CI, a pipe, an agent running the command): plain lines, no escape
  codes. A step says what it starts at once; a bar is silent for its first ``LINE_EVERY_S``
  seconds (most are done by then), then says where it is every ``LINE_EVERY_S`` seconds and,
  having spoken, when it is done. So no long step is silent, and short ones add nothing.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Any, Iterator

from rich.console import Console

CONSOLE = Console(stderr=True)  # one console for every live display, so they nest
LINE_EVERY_S = 15.0


def progress_bar(enabled: bool, every_s: float | None = None):
    """A progress context (``add_task``, ``update``, ``advance``): a rich bar in a terminal, plain
    lines every ``every_s`` seconds (``LINE_EVERY_S``) elsewhere; disabled: nothing."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    if enabled and not CONSOLE.is_terminal:
        return LineProgress(LINE_EVERY_S if every_s is None else every_s)
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=CONSOLE, disable=not enabled, transient=True)


@contextmanager
def step(description: str, enabled: bool, every_s: float | None = None) -> Iterator[Any]:
    """A step of unknown length: a spinner and the elapsed time in a terminal; elsewhere a line
    when it starts and one every ``every_s`` seconds while it runs. Yields the progress, whose
    ``update(0, description=...)`` says what the step is at."""
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    if enabled and not CONSOLE.is_terminal:
        bar = LineProgress(LINE_EVERY_S if every_s is None else every_s, announce=True)
    else:
        bar = Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                       console=CONSOLE, disable=not enabled, transient=True)
    with bar:
        bar.add_task(description, total=None)
        yield bar


class LineProgress:
    """Progress as plain lines on stderr (see the module docstring); the subset of
    ``rich.progress.Progress`` the callers use. A timer thread speaks while nobody updates."""

    def __init__(self, every_s: float = LINE_EVERY_S, announce: bool = False, file=None):
        self.every_s = every_s
        self.announce = announce
        self.file = file
        self.tasks: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = self._last = time.monotonic()
        self._spoke = False

    def __enter__(self) -> "LineProgress":
        self._started = self._last = time.monotonic()
        if self.every_s > 0:
            self._thread = threading.Thread(target=self._tick, name="toollat-progress", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._spoke and not self.announce and exc[0] is None:
                self._say("done")

    def add_task(self, description: str, total: float | None = None, **_: Any) -> int:
        with self._lock:
            self.tasks.append({"description": description, "total": total, "completed": 0.0})
            if self.announce:
                self._say(timed=False)
            return len(self.tasks) - 1

    def update(self, task: int, *, total: float | None = None, completed: float | None = None,
               advance: float | None = None, description: str | None = None, **_: Any) -> None:
        with self._lock:
            t = self.tasks[task]
            if total is not None:
                t["total"] = total
            if completed is not None:
                t["completed"] = completed
            if advance is not None:
                t["completed"] += advance
            if description is not None:
                t["description"] = description
            if self.every_s <= 0 or time.monotonic() - self._last >= self.every_s:
                self._say()

    def advance(self, task: int, advance: float = 1) -> None:
        self.update(task, advance=advance)

    def _tick(self) -> None:
        while not self._stop.wait(self.every_s):
            with self._lock:
                if time.monotonic() - self._last >= self.every_s and self.tasks:
                    self._say()

    def _say(self, state: str | None = None, timed: bool = True) -> None:
        """One line for the latest task: what it is at, how far (when it has a total), the time."""
        t = self.tasks[-1]
        elapsed = int(time.monotonic() - self._started)
        where = f" {t['completed']:,.0f}/{t['total']:,.0f}" if t["total"] else ""
        line = f"{t['description']}{':' if where or state else ''}{where}{' ' + state if state else ''}"
        print(f"{line} ({elapsed // 60}:{elapsed % 60:02d})" if timed else line, file=self.file or sys.stderr, flush=True)
        self._last = time.monotonic()
        self._spoke = True
