"""Scripted agent sessions: which tool call comes next, with which arguments.

A ``SessionPlanner`` plays one session the way a coding agent tends to: it explores first
(Glob, Grep, Read, ``ls``, ``git log``), then works (Read, Edit, Write, small ``python -c``
checks), then verifies (pytest, ``compileall``, ``tar``, ``git diff``, waits with ``sleep``).
Every choice comes from the harvest's ``random.Random(seed)``. Arguments are drawn so that
costs differ by orders of magnitude: a file, a folder, a package or the whole tree; loops of
10^3 to 10^7 iterations; a fast test file or the slow ones; sleeps of 0.1 to 10 s.

Each planned call carries a rough cost estimate (seconds, from the sizes in the workspace
index) so that the harvest does not start a call the remaining budget cannot hold. Bash
commands are written as an agent would type them (relative paths, quoted patterns, the odd
``| head`` or ``2>&1``) and must pass the catalog like any other command.
"""
from __future__ import annotations

import math
import random
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .safety import snippet
from .workspace import Package, Workspace

__all__ = ["PlannedCall", "SessionPlanner", "TurnBreak"]


@dataclass
class PlannedCall:
    name: str
    input: dict[str, Any]
    est_s: float
    read_only: bool = False


@dataclass
class TurnBreak:
    """The agent ends its turn with ``text``; the human answers with ``prompt``."""
    text: str
    prompt: str


# Step kinds and their weights in each phase of a session.
PHASES: dict[str, dict[str, float]] = {
    "explore": {"read": 5, "grep": 4, "glob": 3, "group": 2.5, "ls": 1.5, "find": 1.5, "wc": 1,
                "du": 0.5, "git_status": 1, "git_log": 1, "git_grep": 1, "py_import": 0.5, "sleep": 0.5},
    "work": {"read": 5, "edit": 3.5, "write": 1.5, "grep": 2, "group": 1, "py_loop": 2, "py_import": 0.5,
             "git_diff": 1, "sleep": 1, "pytest": 0.7, "wc": 0.5},
    "verify": {"pytest": 3.5, "compileall": 1.5, "py_loop": 1.5, "tar": 1, "git_status": 1, "git_diff": 1,
               "sleep": 1.5, "read": 1, "py_import": 0.5, "du": 0.5},
}
# Seconds per loop iteration of each python -c snippet, and the largest n an agent would pick.
LOOP_COST = {"squares": (7e-8, 4 * 10**7), "json": (8e-7, 10**6), "sha256": (2.4e-6, 10**6), "sort": (3e-7, 3 * 10**6)}
# Warm-cache import times; a cold first import can take twice as long, hence the margin here.
IMPORT_COST = {"json": 0.04, "sqlite3": 0.05, "asyncio": 0.07, "email.mime.text": 0.05, "numpy": 0.3,
               "pandas": 1.0, "scipy.stats": 2.0, "sklearn.ensemble": 3.0, "torch": 4.0}
# pytest: start-up plus what each generated file costs (seconds).
PYTEST_START = 0.45
PYTEST_FILE_COST = {"test_fast_math.py": 0.03, "test_fast_text.py": 0.01, "test_params_many.py": 0.15,
                    "test_medium_loops.py": 0.25, "test_slow_compute.py": 0.6, "test_slow_sleep.py": 2.95}
GREP_PATTERNS = [r"def __init__", r"class \w+Error", r"TODO|FIXME|XXX", r"import (os|sys|re)\b", r"raise ValueError",
                 r"^from \.\w* import", r"@property", r"return None$", r"self\.\w+ = ", r"async def", r"lambda \w+:",
                 r"isinstance\(\w+, (int|str)\)", r"deprecat", r"warnings\.warn\(", r"except \w+ as \w+:", r"yield from"]
GIT_GREP_PATTERNS = ["TODO", "def __repr__", "raise TypeError", "import re", "deprecated", "classmethod", "NotImplementedError"]
GLOB_PATTERNS = ["**/*.py", "*.py", "**/__init__.py", "**/test_*.py", "**/*.txt", "**/*util*.py", "**/*.pyi",
                 "**/*.md", "*/*.py", "**/*config*"]
PROMPTS = [
    "Look through {rel} and find where errors are raised; add a short review note where it helps, then make sure the tests still pass.",
    "Can you get familiar with {rel}? Summarise how it is laid out and check that the test suite runs.",
    "Some test in tests/ is slow. Find out which, and check how long the suite takes overall.",
    "Audit {rel} for TODOs and deprecated calls, then package it up into build/.",
    "Find the main entry points of {rel} and leave notes in notes/ about what each does.",
]
FOLLOW_UPS = [
    "Thanks. Now run the whole test suite and byte-compile {rel}.",
    "Also check git status and show me what changed.",
    "Good. Can you time a few quick benchmarks with python -c while you're at it?",
]


def _nice(x: float) -> int:
    """Round to 1, 2 or 5 times a power of ten, as people type loop sizes."""
    if x < 1:
        return 1
    exp = math.floor(math.log10(x))
    base = x / 10**exp
    return int((1 if base < 1.5 else 2 if base < 3.5 else 5) * 10**exp)


class SessionPlanner:
    """Plans the calls of one session. ``next(remaining_s)`` gives the next step or None."""

    def __init__(self, ws: Workspace, rng: random.Random):
        self.ws, self.rng = ws, rng
        # Sessions mostly work in one package but the large one is the most common focus.
        self.focus: Package = rng.choices(ws.packages, weights=[1, 1.5, 2])[0]
        self.length = rng.randint(12, 34)
        self.turn_at = rng.randint(self.length // 2, self.length - 3) if rng.random() < 0.4 else None
        self.step = 0
        self.writes = 0
        self.prompt = rng.choice(PROMPTS).format(rel=self.focus.rel)

    # -- the session's course -------------------------------------------------------------
    def next(self, remaining_s: float) -> list[PlannedCall] | TurnBreak | None:
        if self.step >= self.length:
            return None
        if self.turn_at is not None and self.step == self.turn_at:
            self.turn_at = None
            return TurnBreak(text=f"Done with the first part: I went through {self.focus.rel}.",
                             prompt=self.rng.choice(FOLLOW_UPS).format(rel=self.focus.rel))
        progress = self.step / self.length
        phase = "explore" if progress < 0.35 else "work" if progress < 0.7 else "verify"
        weights = PHASES[phase]
        for _ in range(10):
            kind = self.rng.choices(list(weights), weights=list(weights.values()))[0]
            calls = self._plan(kind)
            # Calls of one message run in parallel: the wait is the longest one, not the sum.
            if calls and max(c.est_s for c in calls) * 1.5 + 0.1 <= remaining_s:
                self.step += 1
                return calls
        fallback = [self._read()]
        if fallback[0].est_s * 1.5 + 0.05 <= remaining_s:
            self.step += 1
            return fallback
        return None

    def _plan(self, kind: str) -> list[PlannedCall]:
        if kind == "group":
            return self._group()
        return [getattr(self, f"_{kind}")()]

    def _group(self) -> list[PlannedCall]:
        """2-3 read-only calls in one assistant message (Claude Code runs them concurrently)."""
        makers = [self._read, self._grep, self._glob, self._ls, self._git_status, self._git_log, self._wc]
        calls = [self.rng.choice(makers)() for _ in range(self.rng.choice((2, 2, 3)))]
        return [c for c in calls if c.read_only] or [self._read()]

    # -- argument choices -----------------------------------------------------------------
    def _package(self) -> Package:
        return self.focus if self.rng.random() < 0.75 else self.rng.choice(self.ws.packages)

    def _file(self, max_bytes: int = 10**9) -> tuple[str, int]:
        pkg = self._package()
        files = [f for f in pkg.files if f[1] <= max_bytes] or pkg.files
        return self.rng.choice(files)

    def _folder(self) -> tuple[str, int, int]:
        """A folder at a random scale: from a small subfolder to the whole tree.

        A target size is drawn on a log scale, leaning towards the large end (agents search
        whole packages more often than leaf folders), and the folder closest to it in log size
        is taken: small, medium and large subtrees all come up, not mostly the many tiny ones.
        """
        if self.rng.random() < 0.75:
            pool = [(d, *v) for d, v in self.focus.dirs.items()]
        else:
            top = (".", sum(v[0] for k, v in self.ws.dirs.items() if "/" not in k), self.ws.total_bytes)
            pool = [top, *((d, *v) for d, v in self.ws.dirs.items())]
        low = math.log10(max(min(b for _, _, b in pool), 1))
        high = math.log10(max(max(b for _, _, b in pool), 1))
        target = low + (high - low) * self.rng.random() ** 0.5
        self.rng.shuffle(pool)
        return min(pool, key=lambda f: abs(math.log10(max(f[2], 1)) - target))

    def _abs(self, rel: str) -> str:
        return str(self.ws.root / rel) if rel != "." else str(self.ws.root)

    def _bash(self, command: str, description: str, est: float, read_only: bool = False,
              timeout_ms: int | None = None) -> PlannedCall:
        inp: dict[str, Any] = {"command": command, "description": description}
        if timeout_ms is not None:
            inp["timeout"] = timeout_ms
        return PlannedCall("Bash", inp, est, read_only)

    # -- file tools ----------------------------------------------------------------------
    def _read(self) -> PlannedCall:
        rel, size = self._file()
        inp: dict[str, Any] = {"file_path": self._abs(rel)}
        r = self.rng.random()
        if r < 0.35:
            lines = max(size // 40, 1)
            inp["offset"] = self.rng.randint(1, max(lines - 20, 1))
            inp["limit"] = self.rng.choice((20, 50, 100, 200, 500))
        elif r < 0.45:
            inp["limit"] = self.rng.choice((50, 100))
        return PlannedCall("Read", inp, 0.002 + size / 2e8, read_only=True)

    def _grep(self) -> PlannedCall:
        folder, n, size = self._folder()
        r = self.rng.random()
        if r < 0.25:
            rel, fsize = self._file()
            folder, n, size = rel, 1, fsize
        if self.rng.random() < 0.3:
            pattern = self._identifier() or self.rng.choice(GREP_PATTERNS)
        else:
            pattern = self.rng.choice(GREP_PATTERNS)
        inp: dict[str, Any] = {"pattern": pattern, "path": self._abs(folder)}
        if self.rng.random() < 0.2:  # no path: Claude Code searches the whole working directory
            del inp["path"]
            n, size = sum(len(p.files) for p in self.ws.packages), self.ws.total_bytes
        if self.rng.random() < 0.5:
            inp["glob"] = self.rng.choice(("*.py", "**/*.py", "*.txt"))
        mode = self.rng.choice(("files_with_matches", "files_with_matches", "content", "count"))
        if mode != "files_with_matches":
            inp["output_mode"] = mode
        if mode == "content" and self.rng.random() < 0.7:
            inp["-n"] = True
        if self.rng.random() < 0.15:
            inp["-i"] = True
        if mode == "content" and self.rng.random() < 0.4:
            inp["head_limit"] = self.rng.choice((20, 50, 100))
        return PlannedCall("Grep", inp, 0.005 + size / 4e7 + n * 3e-5, read_only=True)

    def _identifier(self) -> str | None:
        """A function name defined in a small file of the focus package, as a word pattern."""
        rel, _ = self._file(max_bytes=60_000)
        try:
            text = (self.ws.root / rel).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
        names = re.findall(r"^\s*def ([A-Za-z_]\w{3,})\(", text, re.MULTILINE)
        return rf"\b{self.rng.choice(names)}\b" if names else None

    def _glob(self) -> PlannedCall:
        folder, n, _ = self._folder()
        inp = {"pattern": self.rng.choice(GLOB_PATTERNS), "path": self._abs(folder)}
        if self.rng.random() < 0.2:  # no path: the whole working directory
            del inp["path"]
            n = sum(len(p.files) for p in self.ws.packages)
        return PlannedCall("Glob", inp, 0.003 + n * 3e-5, read_only=True)

    def _edit(self) -> PlannedCall:
        rel, _ = self._file(max_bytes=300_000)
        path = self.ws.root / rel
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return self._read()
        lines = text.split("\n")
        starts = [i for i, line in enumerate(lines) if re.match(r"^ *(def|class) \w+.*:\s*$", line)]
        self.rng.shuffle(starts)
        for i in starts[:20]:
            old = "\n".join(lines[i:i + self.rng.choice((1, 1, 2, 3, 5))])
            if text.count(old) != 1:
                continue
            indent = re.match(r"^ *", lines[i]).group(0)
            r = self.rng.random()
            if r < 0.08:  # a stale view of the file: the edit fails, as it does for agents
                new = old.replace(":", ":  # reviewed", 1)
                old = old + "  # stale"
            elif r < 0.5:
                new = f"{indent}# harvest: reviewed in session\n{old}"
            else:
                body = "".join(f"{indent}# note {k}: checked the behaviour here\n" for k in range(self.rng.randint(1, 6)))
                new = body + old
            return PlannedCall("Edit", {"file_path": str(path), "old_string": old, "new_string": new}, 0.003 + len(text) / 1e8)
        return self._read()

    def _write(self) -> PlannedCall:
        self.writes += 1
        size = int(10 ** self.rng.uniform(2, 4.3))
        if self.rng.random() < 0.5:
            path = self.ws.root / "notes" / f"{self.focus.name}_notes_{self.writes}.md"
            line = f"- {self.focus.rel}: checked module layout and error handling\n"
        else:
            path = self.ws.root / self.focus.rel / f"_harvest_helpers_{self.writes}.py"
            line = "def helper_{k}(x):\n    return x * {k}\n\n\n"
        parts, total, k = [], 0, 0
        while total < size:
            piece = line.format(k=k) if "{k}" in line else line
            parts.append(piece)
            total += len(piece)
            k += 1
        return PlannedCall("Write", {"file_path": str(path), "content": "".join(parts)}, 0.003)

    # -- shell ---------------------------------------------------------------------------
    def _ls(self) -> PlannedCall:
        folder, n, _ = self._folder()
        flags = self.rng.choice(([], ["-la"], ["-l"], ["-lh"], ["-R"]))
        est = 0.005 + (n * 2e-5 if "-R" in flags else 0.002)
        cmd = shlex.join(["ls", *flags, folder] if folder != "." else ["ls", *flags])
        if "-R" in flags and self.rng.random() < 0.7:
            cmd += " | head -50"
        return self._bash(cmd, f"List {folder}", est, read_only=True)

    def _find(self) -> PlannedCall:
        folder, n, _ = self._folder()
        argv = ["find", folder, "-name", self.rng.choice(("*.py", "*.txt", "__init__.py", "*test*"))]
        if self.rng.random() < 0.5:
            argv += ["-type", "f"]
        cmd = shlex.join(argv)
        tail = self.rng.random()
        if tail < 0.4:
            cmd += " | wc -l"
        elif tail < 0.7:
            cmd += " | head -20"
        return self._bash(cmd, f"Find files in {folder}", 0.006 + n * 5e-6, read_only=True)

    def _wc(self) -> PlannedCall:
        pkg = self._package()
        files = self.rng.sample(pkg.files, k=min(len(pkg.files), self.rng.choice((1, 3, 10, 40))))
        size = sum(n for _, n in files)
        cmd = shlex.join(["wc", "-l", *[f for f, _ in files]])
        if len(files) > 5 and self.rng.random() < 0.5:
            cmd += " | sort -n | tail -5"
        return self._bash(cmd, "Count lines", 0.005 + size / 5e8, read_only=True)

    def _du(self) -> PlannedCall:
        folder, n, _ = self._folder()
        cmd = shlex.join(["du", "-sh", folder]) if self.rng.random() < 0.7 else shlex.join(["du", "-h", "-d", "1", folder])
        return self._bash(cmd, f"Size of {folder}", 0.005 + n * 1e-5, read_only=True)

    def _git_status(self) -> PlannedCall:
        cmd = self.rng.choice(("git status", "git status --short", "git status -sb"))
        return self._bash(cmd, "Show working tree status", 0.03 + sum(len(p.files) for p in self.ws.packages) * 3e-5,
                          read_only=True)

    def _git_log(self) -> PlannedCall:
        cmd = self.rng.choice(("git log --oneline -n 10", "git log --oneline -5", "git log --stat -n 2",
                               f"git log --oneline -- {self.focus.rel}"))
        if "--stat" in cmd and self.rng.random() < 0.5:
            cmd += " | tail -20"
        return self._bash(cmd, "Recent commits", 0.02 + (0.05 if "--stat" in cmd else 0), read_only=True)

    def _git_diff(self) -> PlannedCall:
        cmd = self.rng.choice(("git diff", "git diff --stat", f"git diff -- {self.focus.rel}", "git diff HEAD~1 --stat",
                               "git diff --name-only"))
        if cmd == "git diff" and self.rng.random() < 0.5:
            cmd += " | head -100"
        est = 0.04 + (self.ws.package("large").bytes / 1e8 if "HEAD~1" in cmd else 0)
        return self._bash(cmd, "Show changes", est, read_only=True)

    def _git_grep(self) -> PlannedCall:
        folder, _, size = self._folder()
        flags = self.rng.choice((["-n"], ["-c"], ["-l"], ["-n", "-i"]))
        cmd = shlex.join(["git", "grep", *flags, self.rng.choice(GIT_GREP_PATTERNS), "--", folder])
        if "-n" in flags and self.rng.random() < 0.6:
            cmd += " | head -30"
        return self._bash(cmd, "Search tracked files", 0.02 + size / 2e8, read_only=True)

    def _py_loop(self) -> PlannedCall:
        name = self.rng.choice(list(LOOP_COST))
        per, top = LOOP_COST[name]
        n = min(_nice(10 ** self.rng.uniform(3, math.log10(top))), top)
        cmd = shlex.join(["python", "-c", snippet(name, n=n)])
        return self._bash(cmd, f"Quick {name} benchmark", 0.03 + n * per)

    def _py_import(self) -> PlannedCall:
        module = self.rng.choice(list(IMPORT_COST))
        cmd = shlex.join(["python", "-c", snippet("import", module=module)])
        return self._bash(cmd, f"Check that {module} imports", IMPORT_COST[module])

    def _pytest(self) -> PlannedCall:
        tests = [Path(t).name for t in self.ws.tests]
        r = self.rng.random()
        head = ["python", "-m", "pytest"] if self.rng.random() < 0.6 else ["pytest"]
        flags = [self.rng.choice(("-q", "-q", "-x", "-v", "--tb=short"))]
        if r < 0.4:
            chosen = [self.rng.choice(tests)]
            targets = [f"tests/{chosen[0]}"]
        elif r < 0.65:
            chosen = self.rng.sample(tests, 2)
            targets = [f"tests/{t}" for t in chosen]
        elif r < 0.8:
            chosen = tests
            flags += ["-k", self.rng.choice(("fast", "loop or sort", "square", "not sleep", "wait"))]
            targets = ["tests"]
        else:
            chosen = tests
            targets = ["tests"]
        est = PYTEST_START + sum(PYTEST_FILE_COST[t] for t in chosen)
        cmd = shlex.join([*head, *flags, *targets])
        if self.rng.random() < 0.3:
            cmd += " 2>&1 | tail -15"
        timeout = self.rng.choice((None, None, 120_000, 300_000))
        return self._bash(cmd, "Run tests", est, timeout_ms=timeout)

    def _compileall(self) -> PlannedCall:
        folder, _, size = self._folder()
        force = self.rng.random() < 0.4
        argv = ["python", "-m", "compileall", "-q", *(["-f"] if force else []), folder]
        # Unforced runs skip what an earlier run compiled; the estimate assumes the worst.
        return self._bash(shlex.join(argv), f"Byte-compile {folder}", 0.05 + size / 1.5e7,
                          timeout_ms=self.rng.choice((None, 600_000)))

    def _tar(self) -> PlannedCall:
        folder, _, size = self._folder()
        if folder == ".":
            folder, size = "src", self.ws.dirs["src"][1]
        kind = self.rng.choice(("-czf", "-czf", "-cf", "-cjf"))
        ext = {"-czf": ".tar.gz", "-cf": ".tar", "-cjf": ".tar.bz2"}[kind]
        out = f"build/{folder.replace('/', '_')}{ext}"
        rate = {"-czf": 2.5e7, "-cf": 3e8, "-cjf": 5e6}[kind]
        return self._bash(shlex.join(["tar", kind, out, folder]), f"Archive {folder}", 0.01 + size / rate)

    def _sleep(self) -> PlannedCall:
        r = self.rng.random()
        if r < 0.45:
            seconds = round(self.rng.uniform(0.1, 1.0), 1)
        elif r < 0.85:
            seconds = self.rng.choice((1, 2, 2, 3))
        else:
            seconds = self.rng.choice((5, 5, 8, 10))
        text = f"{seconds:g}"
        return self._bash(f"sleep {text}", "Wait for the background job", float(seconds))
