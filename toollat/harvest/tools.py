"""Run one tool call for real inside the workspace, timed, bounded and checked.

``ToolRunner.run(name, input)`` executes a call shaped like Claude Code's tool inputs:
``Read`` {file_path, offset?, limit?}, ``Grep`` {pattern, path?, glob?, output_mode?, -i?, -n?,
head_limit?}, ``Glob`` {pattern, path?}, ``Edit`` {file_path, old_string, new_string,
replace_all?}, ``Write`` {file_path, content} and ``Bash`` {command, description?, timeout?}.
File tools are plain Python (``re`` over files for Grep, ``pathlib`` for Glob); Bash runs the
argv lists that ``check_command`` returns, as a pipeline, in its own process group, with a
timeout after which the whole group is killed. Every path goes through ``check_path`` first.

The returned ``Outcome`` holds the wall-clock start (epoch seconds), the duration measured with
``perf_counter``, what the tool_result would say (content, is_error) and Claude Code's
``toolUseResult`` details. A refused call, a tool error and a timeout are outcomes, not
exceptions: the session log records them as error results.
"""
from __future__ import annotations

import fnmatch
import os
import re
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .safety import HarvestRefused, check_command, check_path, child_env

__all__ = ["Outcome", "ToolRunner", "TOOLS"]

TOOLS = ("Read", "Grep", "Glob", "Edit", "Write", "Bash")
READ_DEFAULT_LIMIT = 2000
MAX_LINE_CHARS = 2000
GLOB_LIMIT = 100
GREP_MAX_FILE_BYTES = 5_000_000
MAX_BASH_TIMEOUT_MS = 600_000


class CallTimeout(Exception):
    """A file tool ran past its deadline."""


@dataclass
class Outcome:
    content: str                     # the tool_result content, untruncated
    is_error: bool = False
    timed_out: bool = False
    refused: bool = False
    details: dict[str, Any] = field(default_factory=dict)   # toolUseResult
    started_at: float = 0.0          # time.time() just before the call started
    ms: float = 0.0                  # perf_counter duration

    @property
    def ended_at(self) -> float:
        return self.started_at + self.ms / 1000.0


class ToolRunner:
    """Executes tool calls against one workspace. ``timeout_s`` bounds every call."""

    def __init__(self, workspace: Path, timeout_s: float = 30.0, home: Path | None = None):
        self.workspace = Path(workspace).resolve()
        self.timeout_s = float(timeout_s)
        self.home = Path(home) if home is not None else self.workspace
        self.env = child_env(self.home)

    def run(self, name: str, tool_input: dict[str, Any]) -> Outcome:
        """Run one call; never raises for refusals, tool errors or timeouts."""
        handler = getattr(self, f"_{name.lower()}", None) if name in TOOLS else None
        started = time.time()
        t0 = time.perf_counter()
        try:
            if handler is None:
                raise HarvestRefused(f"tool {name!r} is not harvested")
            out = handler(tool_input, t0 + self._timeout_for(name, tool_input))
        except HarvestRefused as exc:
            out = Outcome(f"Refused: {exc}", is_error=True, refused=True)
        except CallTimeout:
            out = Outcome(f"Tool timed out after {_fmt_s(self._timeout_for(name, tool_input))}", is_error=True, timed_out=True)
        except (OSError, UnicodeDecodeError, re.error, ValueError, TypeError, KeyError) as exc:
            out = Outcome(f"Error: {type(exc).__name__}: {exc}", is_error=True)
        out.ms = (time.perf_counter() - t0) * 1000.0
        out.started_at = started
        return out

    def _timeout_for(self, name: str, tool_input: dict[str, Any]) -> float:
        asked = tool_input.get("timeout") if name == "Bash" else None
        if isinstance(asked, int) and not isinstance(asked, bool) and 0 < asked <= MAX_BASH_TIMEOUT_MS:
            return min(self.timeout_s, asked / 1000.0)
        return self.timeout_s

    # -- file tools ---------------------------------------------------------------------
    def _read(self, inp: dict[str, Any], deadline: float) -> Outcome:
        path = check_path(_str(inp, "file_path"), self.workspace)
        offset = _opt_int(inp, "offset", 1) or 1
        limit = _opt_int(inp, "limit", READ_DEFAULT_LIMIT) or READ_DEFAULT_LIMIT
        if path.is_dir():
            return Outcome(f"EISDIR: illegal operation on a directory, read '{path}'", is_error=True)
        if not path.is_file():
            return Outcome(f"File does not exist: {path}", is_error=True)
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        start = max(offset, 1)
        chosen = lines[start - 1:start - 1 + limit]
        text = "\n".join(f"{start + k:>6}\u2192{line[:MAX_LINE_CHARS]}" for k, line in enumerate(chosen))
        details = {"type": "text", "file": {"filePath": str(path), "content": "\n".join(chosen),
                                            "numLines": len(chosen), "startLine": start, "totalLines": len(lines)}}
        return Outcome(text, details=details)

    def _grep(self, inp: dict[str, Any], deadline: float) -> Outcome:
        pattern = _str(inp, "pattern")
        root = check_path(inp.get("path") or ".", self.workspace)
        flags = re.IGNORECASE if inp.get("-i") is True else 0
        regex = re.compile(pattern, flags | re.MULTILINE)
        mode = inp.get("output_mode") or "files_with_matches"
        if mode not in ("files_with_matches", "content", "count"):
            raise ValueError(f"unknown output_mode {mode!r}")
        glob = inp.get("glob")
        head_limit = _opt_int(inp, "head_limit", 0)
        numbered = inp.get("-n") is True
        files: list[str] = []
        lines_out: list[str] = []
        counts: list[str] = []
        for f in self._walk(root, deadline):
            if glob and not (fnmatch.fnmatch(f.name, glob) or f.relative_to(self.workspace).match(glob)):
                continue
            if f.stat().st_size > GREP_MAX_FILE_BYTES:
                continue
            text = f.read_text(encoding="utf-8", errors="replace")
            matches = list(regex.finditer(text))
            if not matches:
                continue
            rel = str(f)  # Claude Code reports absolute paths
            files.append(rel)
            if mode == "count":
                counts.append(f"{rel}:{len(matches)}")
            elif mode == "content":
                seen_lines: set[int] = set()
                for m in matches:
                    lineno = text.count("\n", 0, m.start()) + 1
                    if lineno in seen_lines:
                        continue
                    seen_lines.add(lineno)
                    start = text.rfind("\n", 0, m.start()) + 1
                    end = text.find("\n", m.end())
                    line = text[start:end if end >= 0 else len(text)][:MAX_LINE_CHARS]
                    lines_out.append(f"{rel}:{lineno}:{line}" if numbered else f"{rel}:{line}")
        if mode == "files_with_matches":
            shown = files[:head_limit] if head_limit else files
            content = f"Found {len(files)} file{'s' if len(files) != 1 else ''}\n" + "\n".join(shown) if files else "No files found"
            details = {"mode": mode, "numFiles": len(files), "filenames": shown}
        elif mode == "count":
            shown = counts[:head_limit] if head_limit else counts
            content = "\n".join(shown) if shown else "No matches found"
            details = {"mode": mode, "numFiles": len(files), "filenames": [], "numMatches": len(counts)}
        else:
            shown = lines_out[:head_limit] if head_limit else lines_out
            content = "\n".join(shown) if shown else "No matches found"
            details = {"mode": mode, "numFiles": len(files), "filenames": [], "content": content, "numLines": len(shown)}
        return Outcome(content, details=details)

    def _glob(self, inp: dict[str, Any], deadline: float) -> Outcome:
        pattern = _str(inp, "pattern")
        if pattern.startswith("/") or ".." in Path(pattern).parts:
            raise HarvestRefused(f"glob pattern leaves the search folder: {pattern!r}")
        root = check_path(inp.get("path") or ".", self.workspace)
        found: list[tuple[float, str]] = []
        for p in root.glob(pattern):
            if time.perf_counter() > deadline:
                raise CallTimeout
            if ".git" in p.relative_to(root).parts or not p.is_file():
                continue
            if not p.resolve().is_relative_to(self.workspace):  # a symlink out of the workspace
                continue
            found.append((p.stat().st_mtime, str(p)))
        # Claude Code lists the most recently modified files first.
        found.sort(key=lambda t: (-t[0], t[1]))
        names = [n for _, n in found[:GLOB_LIMIT]]
        content = "\n".join(names) if names else "No files found"
        if len(found) > GLOB_LIMIT:
            content += "\n(Results are truncated. Consider using a more specific path or pattern.)"
        details = {"filenames": names, "numFiles": len(names), "truncated": len(found) > GLOB_LIMIT,
                   "totalMatches": len(found)}
        return Outcome(content, details=details)

    def _edit(self, inp: dict[str, Any], deadline: float) -> Outcome:
        path = check_path(_str(inp, "file_path"), self.workspace, write=True)
        old, new = _str(inp, "old_string", empty_ok=True), _str(inp, "new_string", empty_ok=True)
        replace_all = inp.get("replace_all") is True
        if not path.is_file():
            return Outcome(f"File does not exist: {path}", is_error=True)
        if old == new:
            return Outcome("No changes to make: old_string and new_string are exactly the same.", is_error=True)
        text = path.read_text(encoding="utf-8")
        n = text.count(old) if old else 0
        if n == 0:
            return Outcome(f"String to replace not found in file.\nString: {old}", is_error=True)
        if n > 1 and not replace_all:
            return Outcome(f"Found {n} matches of the string to replace, but replace_all is false. "
                           "To replace all occurrences, set replace_all to true.", is_error=True)
        path.write_text(text.replace(old, new) if replace_all else text.replace(old, new, 1), encoding="utf-8")
        details = {"filePath": str(path), "oldString": old, "newString": new, "originalFile": None,
                   "structuredPatch": [], "userModified": False, "replaceAll": replace_all}
        return Outcome(f"The file {path} has been updated successfully.", details=details)

    def _write(self, inp: dict[str, Any], deadline: float) -> Outcome:
        path = check_path(_str(inp, "file_path"), self.workspace, write=True)
        content = _str(inp, "content", empty_ok=True)
        existed = path.exists()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content, encoding="utf-8")
        kind = "update" if existed else "create"
        msg = (f"The file {path} has been updated successfully." if existed
               else f"File created successfully at: {path}")
        details = {"type": kind, "filePath": str(path), "content": content, "structuredPatch": [], "originalFile": None}
        return Outcome(msg, details=details)

    def _walk(self, root: Path, deadline: float):
        """Regular files under ``root`` (or ``root`` itself), sorted, without .git or symlinks."""
        if root.is_file():
            yield root
            return
        for dirpath, dirnames, filenames in os.walk(root):
            if time.perf_counter() > deadline:
                raise CallTimeout
            dirnames[:] = sorted(d for d in dirnames if d not in (".git", "__pycache__"))
            for name in sorted(filenames):
                f = Path(dirpath) / name
                if not f.is_symlink() and f.is_file():
                    yield f
                if time.perf_counter() > deadline:
                    raise CallTimeout

    # -- Bash -------------------------------------------------------------------------------
    def _bash(self, inp: dict[str, Any], deadline: float) -> Outcome:
        command = _str(inp, "command")
        stages = check_command(command, self.workspace)
        timeout = max(deadline - time.perf_counter(), 0.0)
        rc, out, err, timed_out = run_pipeline([s.argv for s in stages], [s.merge_stderr for s in stages],
                                               self.workspace, self.env, timeout, self.home)
        details = {"stdout": out, "stderr": err, "interrupted": False, "isImage": False,
                   "noOutputExpected": False}
        text = out + (("\n" if out and err else "") + err if err else "")
        if timed_out:
            return Outcome(f"Command timed out after {_fmt_s(timeout)}\n{text}".rstrip(), is_error=True,
                           timed_out=True, details=details)
        if rc != 0:
            return Outcome(f"Exit code {rc}\n{text}".rstrip(), is_error=True, details=details)
        return Outcome(text.rstrip("\n") or "(No output)", details=details)


def run_pipeline(argvs: list[list[str]], merge_stderr: list[bool], cwd: Path, env: dict[str, str],
                 timeout_s: float, tmp_dir: Path) -> tuple[int, str, str, bool]:
    """Run ``argv | argv | ...`` without a shell; (exit code of the last stage, stdout, stderr, timed out).

    All stages share one new process group, so a timeout kills the whole pipeline. Output goes
    to temporary files (no pipe to drain, no deadlock on large output).
    """
    procs: list[subprocess.Popen] = []
    timed_out = False
    with tempfile.TemporaryFile(dir=tmp_dir) as out_f, tempfile.TemporaryFile(dir=tmp_dir) as err_f:
        try:
            prev = None
            for i, argv in enumerate(argvs):
                last = i == len(argvs) - 1
                proc = subprocess.Popen(
                    argv, cwd=cwd, env=env, stdin=prev.stdout if prev else subprocess.DEVNULL,
                    stdout=out_f if last else subprocess.PIPE,
                    stderr=subprocess.STDOUT if merge_stderr[i] and last else err_f,
                    process_group=0 if not procs else procs[0].pid,
                )
                if prev is not None:
                    prev.stdout.close()  # the next stage owns the read end now
                procs.append(proc)
                prev = proc
            deadline = time.perf_counter() + timeout_s
            for proc in reversed(procs):
                proc.wait(timeout=max(deadline - time.perf_counter(), 0.001))
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            if procs:
                if timed_out or any(p.poll() is None for p in procs):
                    try:
                        os.killpg(procs[0].pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                for p in procs:
                    p.wait()
                    if p.stdout is not None:
                        p.stdout.close()
        out_f.seek(0)
        err_f.seek(0)
        out = out_f.read().decode("utf-8", errors="replace")
        err = err_f.read().decode("utf-8", errors="replace")
    rc = procs[-1].returncode if procs else -1
    return rc, out, err, timed_out


def _str(inp: dict[str, Any], key: str, empty_ok: bool = False) -> str:
    v = inp.get(key)
    if not isinstance(v, str) or (not v and not empty_ok):
        raise ValueError(f"input {key!r} must be a {'' if empty_ok else 'non-empty '}string")
    return v


def _opt_int(inp: dict[str, Any], key: str, default: int) -> int:
    v = inp.get(key, default)
    if v is None:
        return default
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise ValueError(f"input {key!r} must be a non-negative integer")
    return v


def _fmt_s(seconds: float) -> str:
    """Claude Code's style: ``2m 0.0s`` or ``12.5s``."""
    minutes, secs = divmod(seconds, 60)
    return f"{int(minutes)}m {secs:.1f}s" if minutes else f"{secs:.1f}s"
