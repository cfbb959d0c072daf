"""What the harvest may run and touch: the command catalog, path checks, the child environment.

Nothing reaches a subprocess without passing ``check_command``: a Bash command line is split
with ``shlex`` (never handed to a shell), cut at ``|`` into at most three stages, and every
stage must match one program of the fixed catalog with its allowed flags, bounded numbers and
path arguments that resolve inside the workspace. The result is a list of argv lists, run with
``shell=False``. Anything else raises ``HarvestRefused``. Python code for ``python -c`` must be
one of a few fixed snippets with an integer (or a module from a fixed list) filled in, and
Python always runs isolated (``-I``: neither the working directory nor user site on ``sys.path``).

``check_path`` is the one gate for file paths, used by the file tools as well: the path is
resolved (symlinks followed, ``..`` collapsed) and must lie inside the workspace; writes may
not go into ``.git`` or the generated tests, nor create files that would change what a catalog
command runs (``conftest.py``, pytest configuration, ``.py`` files at the workspace root). ``child_env`` builds the environment from scratch so that no proxy,
credential helper, user git config or pager leaks into the children.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CATALOG", "GENERATED_TESTS", "IMPORT_MODULES", "PY_SNIPPETS", "Catalog", "HarvestRefused",
    "Stage", "check_command", "check_path", "child_env",
]


class HarvestRefused(Exception):
    """A command or path the harvest will not run or touch."""


# The generated pytest suite (workspace.py writes exactly these); pytest may run nothing else.
GENERATED_TESTS = (
    "test_fast_math.py", "test_fast_text.py", "test_params_many.py",
    "test_medium_loops.py", "test_slow_compute.py", "test_slow_sleep.py",
)

# ``python -c`` snippets; ``{n}`` is an integer of at most 9 digits, ``{module}`` one of IMPORT_MODULES.
PY_SNIPPETS: dict[str, str] = {
    "squares": "print(sum(i * i for i in range({n})))",
    "json": "import json; print(len(json.dumps([{{'k': i, 'v': str(i)}} for i in range({n})])))",
    "sha256": "import hashlib; h = hashlib.sha256(); [h.update(b'x' * 4096) for _ in range({n})]; print(h.hexdigest())",
    "sort": "import random; r = random.Random(0); print(sorted(r.random() for _ in range({n}))[0])",
    "import": "import {module}; print({module}.__name__)",
}
# Installed modules that are cheap or slow to import; none touches the network on import.
IMPORT_MODULES = ("json", "sqlite3", "asyncio", "email.mime.text", "numpy", "pandas", "scipy.stats", "sklearn.ensemble", "torch")
MAX_LOOP = 10**8
MAX_SLEEP_S = 30.0
MAX_PATTERN = 200
_SHELL_OPERATORS = {";", "&&", "||", "&", ">", ">>", "<", "<<", "<<<", "|&", "(", ")", "`"}
_MERGE_STDERR = "2>&1"


@dataclass(frozen=True)
class Stage:
    """One pipeline stage, ready to run with ``cwd`` = the workspace."""
    argv: list[str]
    merge_stderr: bool = False


# -- paths --------------------------------------------------------------------------------
def check_path(path: str | Path, workspace: Path, write: bool = False) -> Path:
    """The resolved path, if it lies inside ``workspace``; else ``HarvestRefused``.

    Relative paths are taken from the workspace (the children's working directory).
    Symlinks are followed before the check, so a link pointing outside is refused.
    """
    ws = Path(workspace).resolve()
    text = str(path)
    if not text or "\x00" in text:
        raise HarvestRefused(f"unusable path: {text!r}")
    p = Path(text).expanduser() if text.startswith("~") else Path(text)
    try:
        resolved = (p if p.is_absolute() else ws / p).resolve()
    except (OSError, RuntimeError) as exc:  # symlink loops
        raise HarvestRefused(f"unresolvable path {text!r}: {exc}") from None
    if not resolved.is_relative_to(ws):
        raise HarvestRefused(f"path outside the workspace: {text}")
    if write:
        _check_writable(resolved.relative_to(ws), text)
    return resolved


# Files that would change what a catalog command executes: pytest's configuration and
# conftest files, the generated tests, modules Python could import from the working directory.
_NO_WRITE_NAMES = {"conftest.py", "pytest.ini", "setup.cfg", "tox.ini", "pyproject.toml",
                   "sitecustomize.py", "usercustomize.py"}


def _check_writable(rel: Path, text: str) -> None:
    parts = rel.parts
    if ".git" in parts:
        raise HarvestRefused(f"writing inside .git is not allowed: {text}")
    if parts and parts[0] == "tests":
        raise HarvestRefused(f"the generated tests are read-only: {text}")
    if rel.name in _NO_WRITE_NAMES or rel.suffix == ".pth" or (len(parts) == 1 and rel.suffix == ".py"):
        raise HarvestRefused(f"writing {rel.name} could change what the catalog runs: {text}")


# -- the catalog --------------------------------------------------------------------------
class _Args:
    """Tokens of one stage after the program name, consumed left to right by a validator."""

    def __init__(self, program: str, tokens: list[str], workspace: Path):
        self.program, self.tokens, self.ws, self.i = program, tokens, workspace, 0

    def more(self) -> bool:
        return self.i < len(self.tokens)

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.more() else None

    def take(self) -> str:
        if not self.more():
            self.refuse("missing argument")
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def refuse(self, why: str) -> None:
        raise HarvestRefused(f"{self.program}: {why} in {shlex.join([self.program, *self.tokens])!r}")

    def flag(self, allowed: set[str]) -> str | None:
        """The next token if it is one of ``allowed`` flags."""
        tok = self.peek()
        if tok in allowed:
            self.i += 1
            return tok
        return None

    def flags(self, allowed: set[str]) -> list[str]:
        out = []
        while (tok := self.peek()) is not None and tok.startswith("-") and tok != "--":
            if tok not in allowed:
                self.refuse(f"flag {tok!r} not allowed")
            out.append(self.take())
        return out

    def integer(self, low: int, high: int) -> str:
        tok = self.take()
        if not re.fullmatch(r"\d{1,9}", tok) or not low <= int(tok) <= high:
            self.refuse(f"expected an integer in [{low}, {high}], got {tok!r}")
        return tok

    def path(self, write: bool = False) -> str:
        tok = self.take()
        if tok.startswith("-"):
            self.refuse(f"expected a path, got {tok!r}")
        check_path(tok, self.ws, write=write)
        return tok

    def paths(self, at_least: int = 0) -> list[str]:
        out = []
        while self.more():
            out.append(self.path())
        if len(out) < at_least:
            self.refuse(f"expected at least {at_least} path(s)")
        return out

    def pattern(self) -> str:
        tok = self.take()
        if tok.startswith("-") or len(tok) > MAX_PATTERN or "\n" in tok:
            self.refuse(f"unusable pattern {tok!r}")
        return tok

    def end(self) -> None:
        if self.more():
            self.refuse(f"unexpected argument {self.peek()!r}")


def _exe(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise HarvestRefused(f"{name}: not installed on this machine")
    return found


def _ls(a: _Args, first: bool) -> list[str]:
    flags = a.flags({"-l", "-a", "-la", "-al", "-lh", "-lah", "-1", "-R", "-lR", "-S", "-lS", "-t", "-lt"})
    return [_exe("ls"), *flags, *a.paths()]


def _find(a: _Args, first: bool) -> list[str]:
    roots = []
    while a.more() and not a.peek().startswith("-"):
        roots.append(a.path())
    if not roots:
        a.refuse("a start path is required")
    preds: list[str] = []
    # Only tests, never actions: -exec, -delete, -fprint, -ok ... are refused.
    while a.more():
        tok = a.take()
        if tok in ("-name", "-iname", "-path"):
            preds += [tok, a.pattern()]
        elif tok == "-type":
            kind = a.take()
            if kind not in ("f", "d", "l"):
                a.refuse(f"-type {kind!r}")
            preds += [tok, kind]
        elif tok in ("-maxdepth", "-mindepth"):
            preds += [tok, a.integer(0, 50)]
        elif tok == "-size":
            size = a.take()
            if not re.fullmatch(r"[+-]?\d{1,6}[ckMG]?", size):
                a.refuse(f"-size {size!r}")
            preds += [tok, size]
        elif tok in ("-newer",):
            preds += [tok, a.path()]
        elif tok in ("-print", "-o", "-not"):
            preds.append(tok)
        else:
            a.refuse(f"find predicate {tok!r} not allowed")
    return [_exe("find"), *roots, *preds]


def _wc(a: _Args, first: bool) -> list[str]:
    flags = a.flags({"-l", "-c", "-w", "-m"})
    return [_exe("wc"), *flags, *a.paths(at_least=1 if first else 0)]


def _du(a: _Args, first: bool) -> list[str]:
    allowed = {"-s", "-h", "-sh", "-hs", "-a", "-ah", "-c", "-sch", "-shc", "-k", "-sk"}
    opts: list[str] = []
    while (tok := a.peek()) is not None and tok.startswith("-"):
        if tok == "-d":
            opts += [a.take(), a.integer(0, 10)]
        elif tok in allowed:
            opts.append(a.take())
        else:
            a.refuse(f"flag {tok!r} not allowed")
    return [_exe("du"), *opts, *a.paths()]


def _head_tail(a: _Args, first: bool) -> list[str]:
    count: list[str] = []
    tok = a.peek()
    if tok == "-n":
        a.take()
        count = ["-n", a.integer(0, 100_000)]
    elif tok is not None and re.fullmatch(r"-\d{1,6}", tok):
        count = [a.take()]
    return [_exe(a.program), *count, *a.paths(at_least=1 if first else 0)]


def _sort(a: _Args, first: bool) -> list[str]:
    # No -o (it writes a file) and no --compress-program (it runs one).
    flags = a.flags({"-n", "-r", "-u", "-rn", "-nr", "-h", "-hr", "-rh"})
    return [_exe("sort"), *flags, *a.paths()]


def _uniq(a: _Args, first: bool) -> list[str]:
    if first:
        a.refuse("uniq only reads a pipe here")
    flags = a.flags({"-c", "-d", "-u"})
    a.end()
    return [_exe("uniq"), *flags]


def _grep(a: _Args, first: bool) -> list[str]:
    flags = []
    while (tok := a.peek()) is not None and tok.startswith("-"):
        if re.fullmatch(r"-[rnclivEwIoh]+", tok):
            flags.append(a.take())
        elif re.fullmatch(r"--include=[\w*.?\[\]-]{1,40}", tok):
            flags.append(a.take())
        elif tok == "-e":
            break
        else:
            a.refuse(f"flag {tok!r} not allowed")
    if a.flag({"-e"}):
        pattern = ["-e", a.take()]
        if len(pattern[1]) > MAX_PATTERN:
            a.refuse("pattern too long")
    else:
        pattern = [a.pattern()]
    recursive = any("r" in f for f in flags if not f.startswith("--"))
    paths = a.paths(at_least=1 if first and recursive else 0)
    if first and not paths:
        a.refuse("grep needs a path (it would wait on stdin)")
    return [_exe("grep"), *flags, *pattern, *paths]


def _git(a: _Args, first: bool) -> list[str]:
    sub = a.take()
    # Local, read-only subcommands only: nothing that talks to a remote, writes refs or runs hooks.
    if sub == "status":
        opts = a.flags({"-s", "--short", "--porcelain", "-sb", "-b", "--branch", "-uno", "--untracked-files=no"})
        rest = _git_paths(a)
        extra: list[str] = []
    elif sub == "log":
        opts = []
        while (tok := a.peek()) is not None and tok.startswith("-") and tok != "--":
            if tok in ("--oneline", "--stat", "--name-only", "--shortstat", "--reverse"):
                opts.append(a.take())
            elif tok == "-n":
                opts += [a.take(), a.integer(1, 10_000)]
            elif re.fullmatch(r"-\d{1,4}", tok):
                opts.append(a.take())
            else:
                a.refuse(f"git log option {tok!r} not allowed")
        rest = _git_paths(a)
        extra = []
    elif sub in ("diff", "show"):
        opts = []
        while (tok := a.peek()) is not None and tok != "--":
            if tok in ("--stat", "--name-only", "--shortstat", "--cached", "--numstat"):
                opts.append(a.take())
            elif re.fullmatch(r"HEAD(~\d{1,2})?", tok):
                opts.append(a.take())
            else:
                a.refuse(f"git {sub} argument {tok!r} not allowed")
        rest = _git_paths(a)
        extra = ["--no-ext-diff", "--no-textconv"]
    elif sub == "grep":
        opts = []
        while (tok := a.peek()) is not None and tok.startswith("-") and tok not in ("-e", "--"):
            if not re.fullmatch(r"-[nclivEwI]+", tok):
                a.refuse(f"git grep option {tok!r} not allowed")
            opts.append(a.take())
        if a.flag({"-e"}):
            opts += ["-e", a.take()]
        else:
            opts.append(a.pattern())
        rest = _git_paths(a)
        extra = []
    elif sub == "ls-files":
        opts = a.flags({"-m", "-o", "--others", "--modified", "--exclude-standard"})
        rest = _git_paths(a)
        extra = []
    else:
        a.refuse(f"git subcommand {sub!r} not in the catalog")
        raise AssertionError  # unreachable; refuse raises
    # -c settings: no pager, no fsmonitor hook, no protocol at all (no network by construction).
    base = [_exe("git"), "--no-pager", "-c", "core.fsmonitor=false", "-c", "protocol.allow=never", "-c", "core.pager=cat"]
    return [*base, sub, *extra, *opts, *rest]


def _git_paths(a: _Args) -> list[str]:
    out = []
    if a.flag({"--"}):
        out.append("--")
    out += a.paths()
    return out


def _snippet_regexes() -> dict[str, re.Pattern[str]]:
    out = {}
    for name, template in PY_SNIPPETS.items():
        rx = re.escape(template.replace("{{", "{").replace("}}", "}"))
        rx = rx.replace(re.escape("{n}"), r"(?P<n>\d{1,9})")
        modules = "|".join(re.escape(m) for m in IMPORT_MODULES)
        # The module appears twice; the second occurrence must repeat the first.
        rx = rx.replace(re.escape("{module}"), f"(?P<module>{modules})", 1)
        rx = rx.replace(re.escape("{module}"), "(?P=module)")
        out[name] = re.compile(rx)
    return out


_SNIPPET_RX = _snippet_regexes()


def snippet(name: str, n: int | None = None, module: str | None = None) -> str:
    """The ``python -c`` code of a catalog snippet (what the planner uses)."""
    if name == "import":
        return PY_SNIPPETS[name].format(module=module)
    return PY_SNIPPETS[name].format(n=n)


def _python_code(code: str) -> None:
    for rx in _SNIPPET_RX.values():
        m = rx.fullmatch(code)
        if m and ("n" not in rx.groupindex or int(m["n"]) <= MAX_LOOP):
            return
    raise HarvestRefused(f"python -c: code is not a catalog snippet: {code[:80]!r}")


def _pytest_args(a: _Args) -> list[str]:
    args = []
    while a.more():
        tok = a.take()
        if tok in ("-q", "-x", "-v", "-s", "--tb=short", "--tb=no", "--tb=line", "-rA", "--no-header"):
            args.append(tok)
        elif tok == "-k":
            expr = a.take()
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_ ]{0,80}", expr):
                a.refuse(f"-k expression {expr!r} not allowed")
            args += ["-k", expr]
        elif tok == "--maxfail":
            args += [tok, a.integer(1, 100)]
        elif tok.startswith("-"):
            a.refuse(f"pytest option {tok!r} not allowed")
        else:
            # Only the generated suite: the tests folder or one of its files, optionally ::test_name.
            file, _, node = tok.partition("::")
            resolved = check_path(file, a.ws)
            tests_dir = Path(a.ws).resolve() / "tests"
            ok_dir = resolved == tests_dir and not node
            ok_file = resolved.parent == tests_dir and resolved.name in GENERATED_TESTS
            if not (ok_dir or ok_file) or (node and not re.fullmatch(r"\w{1,80}(\[[\w.-]{1,40}\])?", node)):
                a.refuse(f"pytest target {tok!r} is not part of the generated suite")
            args.append(tok)
    return args


def _python(a: _Args, first: bool) -> list[str]:
    if a.flag({"-c"}):
        code = a.take()
        a.end()
        _python_code(code)
        return [sys.executable, "-I", "-c", code]
    if a.flag({"-m"}):
        module = a.take()
        if module == "pytest":
            return [sys.executable, "-I", "-m", "pytest", *_pytest_args(a)]
        if module == "compileall":
            flags = a.flags({"-q", "-f", "-qf", "-fq"})
            workers = []
            if a.flag({"-j"}):
                workers = ["-j", a.integer(0, 8)]
            return [sys.executable, "-I", "-m", "compileall", *flags, *workers, *a.paths(at_least=1)]
        a.refuse(f"python -m {module!r} not in the catalog")
    a.refuse("python needs -c SNIPPET or -m pytest|compileall")
    raise AssertionError


def _pytest(a: _Args, first: bool) -> list[str]:
    return [sys.executable, "-I", "-m", "pytest", *_pytest_args(a)]


def _tar(a: _Args, first: bool) -> list[str]:
    # Exactly ``tar -c[z|j]f OUT.tar[.gz|.bz2] SUBTREE...``: create only, into build/.
    mode = a.take()
    if mode not in ("-cf", "-czf", "-cjf"):
        a.refuse(f"tar mode {mode!r} not allowed (only -cf, -czf, -cjf)")
    out = a.path(write=True)
    resolved = check_path(out, a.ws)
    if resolved.parent != Path(a.ws).resolve() / "build" or not re.fullmatch(r"[\w.-]+\.tar(\.gz|\.bz2)?", resolved.name):
        a.refuse(f"tar output must be build/NAME.tar[.gz|.bz2], got {out!r}")
    return [_exe("tar"), mode, out, *a.paths(at_least=1)]


def _sleep(a: _Args, first: bool) -> list[str]:
    tok = a.take()
    a.end()
    if not re.fullmatch(r"\d{1,2}(\.\d{1,3})?", tok) or not 0 < float(tok) <= MAX_SLEEP_S:
        a.refuse(f"sleep takes 0 < seconds <= {MAX_SLEEP_S:g}, got {tok!r}")
    return [_exe("sleep"), tok]


Validator = Callable[[_Args, bool], list[str]]


class Catalog:
    """The fixed set of programs a harvest Bash call may run, and how each is checked.

    ``sources`` may start a pipeline; ``filters`` may only read a previous stage's output.
    """

    sources: dict[str, Validator] = {
        "ls": _ls, "find": _find, "wc": _wc, "du": _du, "head": _head_tail, "tail": _head_tail,
        "grep": _grep, "git": _git, "python": _python, "pytest": _pytest, "tar": _tar, "sleep": _sleep,
    }
    filters: dict[str, Validator] = {
        "head": _head_tail, "tail": _head_tail, "wc": _wc, "sort": _sort, "uniq": _uniq, "grep": _grep,
    }
    max_stages = 3

    def check(self, command: str, workspace: Path) -> list[Stage]:
        """The stages to run for ``command``, or ``HarvestRefused``."""
        if not isinstance(command, str) or not command.strip() or len(command) > 4000:
            raise HarvestRefused("empty or oversized command")
        if any(c in command for c in "\x00\n\r$`"):
            raise HarvestRefused(f"command has characters the catalog never uses: {command[:80]!r}")
        try:
            tokens = shlex.split(command)
        except ValueError as exc:
            raise HarvestRefused(f"unparseable command: {exc}") from None
        stages: list[list[str]] = [[]]
        for tok in tokens:
            if tok == "|":
                stages.append([])
            elif tok in _SHELL_OPERATORS or tok.startswith((">", "<", "&")) or re.fullmatch(r"\d?>.*", tok) and tok != _MERGE_STDERR:
                raise HarvestRefused(f"shell operator {tok!r} not allowed: {command[:80]!r}")
            else:
                stages[-1].append(tok)
        if len(stages) > self.max_stages:
            raise HarvestRefused(f"at most {self.max_stages} pipeline stages")
        out = []
        for i, words in enumerate(stages):
            merge = bool(words) and words[-1] == _MERGE_STDERR
            if merge:
                words = words[:-1]
            if not words:
                raise HarvestRefused(f"empty pipeline stage in {command[:80]!r}")
            table = self.sources if i == 0 else self.filters
            program = words[0]
            if program == "python3":
                program = "python"
            if program not in table:
                where = "catalog" if i == 0 else "catalog of pipe filters"
                raise HarvestRefused(f"program {words[0]!r} is not in the {where}")
            argv = table[program](_Args(program, words[1:], workspace), i == 0)
            out.append(Stage(argv, merge))
        return out


CATALOG = Catalog()


def check_command(command: str, workspace: Path) -> list[Stage]:
    """Check a Bash command line against the catalog; the argv of each pipeline stage."""
    return CATALOG.check(command, workspace)


# -- environment --------------------------------------------------------------------------
def child_env(home: Path) -> dict[str, str]:
    """A minimal environment for the children: no proxies, no user config, no pager."""
    path = os.environ.get("PATH") or "/usr/local/bin:/usr/bin:/bin"
    return {
        "PATH": path,
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "TMPDIR": str(home),
        # Nothing networked runs, and if something tried, no proxy would route it.
        "no_proxy": "*",
        "NO_PROXY": "*",
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_PAGER": "cat",
        "PAGER": "cat",
        "PYTHONNOUSERSITE": "1",
        "PYTHONUNBUFFERED": "1",
    }
