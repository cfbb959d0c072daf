"""Every code block of README.md, run as printed, in order, in a fresh copy of the checkout.

The README's conventions (the test enforces them):

- A ```bash or ```python block runs. A ```text block is a picture (a tree, an output), not run.
- ``<!-- not run: REASON -->`` on the line above a block: it is not run, for the reason given (it
  needs what CI has not: a package index, a GPU serving engine, a cluster, or it is ``make``
  itself). At most ``MAX_NOT_RUN`` blocks are so marked.
- ``<!-- output -->`` on the line above a ```text block: what the runnable block before it prints
  on stdout. ``...`` stands for anything; every number must equal the run's number rounded as
  printed (``0.8`` matches 0.8312, not 0.86), so a retrained default bundle that moves a number
  fails here, naming the README line to update. ``python tests/test_readme.py --update`` rewrites
  the numbers of every output block from a fresh run (the one command after a retrain).

How blocks run, as a reader runs them after ``make train`` and ``source .venv/bin/activate``:
Python blocks in one interpreter, in order, as if pasted into one Python session (names carry
over from block to block); each bash block in a fresh ``bash -eo pipefail`` with the venv's
``bin`` first on PATH. Both run in the clone: the checkout's tracked files copied to a temporary
directory with ``../shared`` beside it (a link to the shared corpus), so everything the README
writes (``calls.parquet``, ``models/``, ``mlflow.db``, ``outputs/``) lands there, never in the
checkout. A command ending in ``&`` (``toollat serve``) is started in the background and kept
for the later blocks; the test waits until it answers. The one substitution: the server port
8700 becomes a free port.
"""
from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

try:
    import pytest
except ImportError:  # run as a script (--update) without pytest
    pytest = None

REPO_ROOT = Path(__file__).resolve().parents[1]
README = REPO_ROOT / "README.md"
MAX_NOT_RUN = 6
PORT = "8700"                      # the README's server port; replaced by a free one
BLOCK_TIMEOUT_S = 600
LANGS = ("bash", "python", "text")


# -- the README's blocks -----------------------------------------------------------------------
@dataclass
class Block:
    line: int                      # 1-based line of the opening fence
    lang: str
    body: str
    mark: str | None               # the HTML comment on the line above, if any
    output: "Block | None" = None  # the ``<!-- output -->`` block that follows, if any

    @property
    def not_run(self) -> str | None:
        m = re.fullmatch(r"not run:\s*(.*)", self.mark or "", re.S)
        return m.group(1).strip() if m else None

    @property
    def runs(self) -> bool:
        return self.lang in ("bash", "python") and self.not_run is None


def parse(text: str) -> list[Block]:
    """The fenced blocks of a Markdown text, each with the HTML comment right above it."""
    lines = text.split("\n")
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        m = re.fullmatch(r"```(\S*)\s*", lines[i])
        if not m:
            i += 1
            continue
        start = i
        j = i + 1
        while j < len(lines) and lines[j].rstrip() != "```":
            j += 1
        above = lines[start - 1].strip() if start > 0 else ""
        mark = re.fullmatch(r"<!--\s*(.*?)\s*-->", above)
        blocks.append(Block(start + 1, m.group(1), "\n".join(lines[start + 1:j]), mark.group(1) if mark else None))
        i = j + 1
    for prev, b in zip(blocks, blocks[1:]):
        if b.mark == "output":
            prev.output = b
    return blocks


# -- expected output: literal text, "..." for anything, numbers as printed ----------------------
_TOKEN = re.compile(r"(\.\.\.|\d+(?:\.\d+)?|\s+)")
_NUM = r"(\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"


def _pattern(expected: str) -> tuple[re.Pattern, list[tuple[str, int]]]:
    """A regex for the expected text and its numbers (text, offset in the expected text)."""
    parts, nums, pos = [], [], 0
    for tok in _TOKEN.split(expected):
        if tok == "...":
            parts.append(".*?")
        elif tok and tok[0].isdigit():
            parts.append(_NUM)
            nums.append((tok, pos))
        elif tok and tok.isspace():
            parts.append(r"\s+")
        elif tok:
            parts.append(re.escape(tok))
        pos += len(tok)
    return re.compile("".join(parts), re.S), nums


def _as_printed(value: str, like: str) -> str:
    decimals = len(like.split(".")[1]) if "." in like else 0
    return f"{float(value):.{decimals}f}"


def compare(expected: str, actual: str) -> tuple[bool, list[tuple[int, str, str, str]]]:
    """(the text matches, [(offset in expected, expected number, as the run prints it rounded, raw)])."""
    pat, nums = _pattern(expected.strip())
    m = pat.fullmatch(actual.strip())
    if m is None:
        return False, []
    wrong = []
    for (tok, off), got in zip(nums, m.groups()):
        if _as_printed(got, tok) != _as_printed(tok, tok):
            wrong.append((off, tok, _as_printed(got, tok), got))
    return True, wrong


def updated(expected: str, actual: str) -> str | None:
    """The expected text with every number replaced by the run's, rounded as printed (None: the text differs)."""
    ok, wrong = compare(expected, actual)
    if not ok:
        return None
    lead = len(expected) - len(expected.lstrip())
    out = expected
    for off, tok, new, _ in sorted(wrong, reverse=True):
        at = lead + off
        out = out[:at] + new + out[at + len(tok):]
    return out


# -- running the blocks ------------------------------------------------------------------------
_DRIVER = r"""
import contextlib, io, json, sys, traceback
ns = {"__name__": "__main__"}
reply = sys.stdout
for line in sys.stdin:
    req = json.loads(line)
    buf, ok, err = io.StringIO(), True, ""
    try:
        with contextlib.redirect_stdout(buf):
            exec(compile(req["code"], req["name"], "exec"), ns)
    except BaseException:
        ok, err = False, traceback.format_exc()
    reply.write(json.dumps({"ok": ok, "stdout": buf.getvalue(), "error": err}) + "\n")
    reply.flush()
"""


@dataclass
class Result:
    block: Block
    ok: bool
    stdout: str
    error: str = ""
    seconds: float = 0.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_clone(tmp: Path, shared: Path) -> Path:
    """The checkout's tracked files (as they are in the working tree) in ``tmp/clone``, ``tmp/shared`` beside it."""
    clone = tmp / "clone"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO_ROOT, capture_output=True, check=True).stdout
    for rel in files.decode().split("\0"):
        src = REPO_ROOT / rel
        if rel and src.is_file():
            dst = clone / rel
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst)
    (tmp / "shared").symlink_to(shared.resolve(), target_is_directory=True)
    return clone


@dataclass
class Runner:
    clone: Path
    env: dict
    logs: Path
    port: str = field(default_factory=lambda: str(_free_port()))
    background: list = field(default_factory=list)
    _py: subprocess.Popen | None = None
    _replies: "queue.Queue[str]" = field(default_factory=queue.Queue)

    def text(self, body: str) -> str:
        return re.sub(rf"\b{PORT}\b", self.port, body)

    def run(self, b: Block) -> Result:
        t0 = time.perf_counter()
        try:
            ok, out, err = self._python(b) if b.lang == "python" else self._bash(b)
        except Exception as e:  # a timeout, a server that never answered
            ok, out, err = False, "", f"{type(e).__name__}: {e}"
        return Result(b, ok, out, err, time.perf_counter() - t0)

    # python: one interpreter for all blocks
    def _python(self, b: Block) -> tuple[bool, str, str]:
        if self._py is None:
            self._py = subprocess.Popen([sys.executable, "-u", "-c", _DRIVER], cwd=self.clone, env=self.env, text=True,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=open(self.logs / "python.stderr", "w"), start_new_session=True)
            threading.Thread(target=lambda: [self._replies.put(x) for x in self._py.stdout], daemon=True).start()
        self._py.stdin.write(json.dumps({"code": self.text(b.body), "name": f"README.md:{b.line}"}) + "\n")
        self._py.stdin.flush()
        try:
            r = json.loads(self._replies.get(timeout=BLOCK_TIMEOUT_S))
        except queue.Empty:
            raise TimeoutError(f"no answer in {BLOCK_TIMEOUT_S} s") from None
        err = r["error"]
        if not r["ok"]:
            err += "\n(stderr)\n" + (self.logs / "python.stderr").read_text()[-3000:]
        return r["ok"], r["stdout"], err

    # bash: each block in a fresh shell; `CMD &` lines become background processes kept for later blocks
    def _bash(self, b: Block) -> tuple[bool, str, str]:
        out, script = [], []
        for cmd in _commands(self.text(b.body)):
            m = re.fullmatch(r"(.*[^&\s])\s*&\s*(#.*)?", cmd, re.S)
            if m and not m.group(1).rstrip().endswith("&"):
                ok, o, e = self._shell("\n".join(script))
                out.append(o)
                if not ok:
                    return False, "".join(out), e
                script = []
                self._start(m.group(1), b)
            else:
                script.append(cmd)
        ok, o, e = self._shell("\n".join(script))
        out.append(o)
        return ok, "".join(out), e

    def _shell(self, script: str) -> tuple[bool, str, str]:
        if not script.strip():
            return True, "", ""
        p = subprocess.run(["bash", "-eo", "pipefail", "-c", script], cwd=self.clone, env=self.env, text=True,
                           capture_output=True, timeout=BLOCK_TIMEOUT_S)
        return p.returncode == 0, p.stdout, f"exit {p.returncode}\n{p.stderr[-4000:]}"

    def _start(self, cmd: str, b: Block) -> None:
        log = self.logs / f"background-{b.line}.log"
        proc = subprocess.Popen(["bash", "-c", cmd], cwd=self.clone, env=self.env, stdout=open(log, "w"),
                                stderr=subprocess.STDOUT, start_new_session=True)
        self.background.append(proc)
        port = re.search(r"--port\s+(\d+)", cmd)
        if not port:
            return
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"`{cmd}` exited {proc.returncode}:\n{log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port.group(1)}/healthz", timeout=2):
                    return
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"`{cmd}` did not answer /healthz in 120 s:\n{log.read_text()[-3000:]}")

    def close(self) -> None:
        procs = self.background + ([self._py] if self._py else [])
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)   # each was started in its own session: its group is its own
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _commands(body: str) -> list[str]:
    """A shell block's commands: lines joined across trailing backslashes."""
    cmds, cur = [], ""
    for line in body.split("\n"):
        cur += line
        if line.endswith("\\"):
            cur += "\n"
            continue
        cmds.append(cur)
        cur = ""
    if cur:
        cmds.append(cur)
    return cmds


def run_readme(tmp: Path, shared: Path, env: dict | None = None, progress=None) -> list[Result]:
    """Run every runnable block in order; stop at the first that fails (later ones build on it)."""
    blocks = parse(README.read_text())
    clone = make_clone(tmp, shared)
    logs = tmp / "logs"
    logs.mkdir()
    base = dict(env if env is not None else os.environ)
    base.pop("TOOLLAT_MODELS", None)                   # bundles by name: the clone's models/
    base.update({
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{base.get('PATH', '')}",  # `source .venv/bin/activate`
        "PYTHONPATH": str(clone), "COLUMNS": "100", "PYTHONUNBUFFERED": "1",
    })
    runner = Runner(clone, base, logs)
    results = []
    try:
        for b in blocks:
            if not b.runs:
                continue
            r = runner.run(b)
            results.append(r)
            if progress:
                progress(r)
            if not r.ok:
                break
    finally:
        runner.close()
    return results


# -- the tests ---------------------------------------------------------------------------------
if pytest is not None:

    def test_blocks_follow_the_conventions():
        blocks = parse(README.read_text())
        assert blocks, "no code blocks found in README.md"
        bad_lang = [f"line {b.line}: ```{b.lang}" for b in blocks if b.lang not in LANGS]
        assert not bad_lang, f"README blocks must be one of {LANGS}: {bad_lang}"
        not_run = [b for b in blocks if b.not_run is not None]
        assert all(b.not_run for b in not_run), "a `<!-- not run: REASON -->` needs its reason"
        assert len(not_run) <= MAX_NOT_RUN, (
            f"{len(not_run)} blocks are not run (at most {MAX_NOT_RUN}): lines {[b.line for b in not_run]}")
        marks = [b for b in blocks if b.mark and b.mark != "output" and b.not_run is None]
        assert not marks, f"unknown block marks: {[(b.line, b.mark) for b in marks]}"
        outputs = [b for b in blocks if b.mark == "output"]
        assert all(b.lang == "text" for b in outputs), "an output block is ```text"
        orphans = [b.line for b in outputs if not any(p.output is b and p.runs for p in blocks)]
        assert not orphans, f"output blocks that follow no runnable block: lines {orphans}"

    def test_the_output_matcher_can_fail():
        assert compare("p50 4.6 s, ttl 805 ms", "p50 4.5612 s, ttl 805.4 ms") == (True, [])
        ok, wrong = compare("p50 4.8 s, ttl 806 ms", "p50 4.5612 s, ttl 805.4 ms")
        assert ok and [(w[1], w[2]) for w in wrong] == [("4.8", "4.6"), ("806", "805")]
        assert compare("keep ... then offload", "keep 3 s then drop")[0] is False
        assert updated("a 1.0 b ... 7", "a 2.04 b xyz 6.9") == "a 2.0 b ... 7"

    @pytest.fixture(scope="module")
    def readme_run(shared_data, tmp_path_factory):
        tmp = tmp_path_factory.mktemp("readme")
        return run_readme(tmp, shared_data.parent)

    def test_every_block_runs_as_printed(readme_run):
        runnable = [b for b in parse(README.read_text()) if b.runs]
        failed = [r for r in readme_run if not r.ok]
        assert not failed, (f"README.md line {failed[0].block.line} ({failed[0].block.lang}) failed:\n"
                            f"{failed[0].block.body}\n--- stdout\n{failed[0].stdout[-2000:]}\n--- error\n{failed[0].error}")
        assert len(readme_run) == len(runnable)

    def test_outputs_are_what_the_blocks_print(readme_run):
        problems = []
        for r in readme_run:
            exp = r.block.output
            if exp is None:
                continue
            ok, wrong = compare(exp.body, r.stdout)
            if not ok:
                problems.append(f"README.md line {exp.line}: the output of the block at line {r.block.line} differs "
                                f"in its text; it prints:\n{r.stdout}")
            for off, tok, new, raw in wrong:
                lead = exp.body[:len(exp.body) - len(exp.body.lstrip())]
                line = exp.line + 1 + lead.count("\n") + exp.body.strip()[:off].count("\n")
                problems.append(f"README.md line {line}: {tok} is printed, the run gives {new} ({raw})")
        assert not problems, "\n".join(problems) + (
            "\n(after a retrain: `python tests/test_readme.py --update` rewrites the numbers)")

    def test_the_worked_example_is_the_same_in_process_and_over_http(readme_run):
        """The worked example's second prediction, to the last digit, from the Python block and the curl block."""
        import ast

        py = [r for r in readme_run if r.block.lang == "python" and "explain=True" in r.block.body]
        http = [r for r in readme_run if r.block.lang == "bash" and '"explain": true' in r.block.body]
        assert len(py) == 1 and len(http) == 1, "the README's worked example: one Python block and one curl block"
        first = py[0].stdout.split("\n")[0]
        quantiles = ast.literal_eval(first[:first.rindex("}") + 1])
        costs = ast.literal_eval(py[0].stdout.strip().split("\n")[-1])
        served = json.loads(http[0].stdout.strip().split("\n")[-1])["predictions"][0]
        assert served["call_id"] == "c2"
        assert served["quantiles"] == quantiles
        assert served["costs"] == costs


# -- python tests/test_readme.py --update ------------------------------------------------------
def main(argv: list[str]) -> int:
    import argparse

    sys.path.insert(0, str(REPO_ROOT))
    from toollat.paths import shared_dir

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--update", action="store_true", help="rewrite the numbers of README.md's output blocks")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="toollat-readme-") as tmp:
        results = run_readme(Path(tmp), shared_dir(),
                             progress=lambda r: print(f"line {r.block.line:4d} {r.block.lang:6s} "
                                                      f"{'ok' if r.ok else 'FAILED'} {r.seconds:6.1f} s", file=sys.stderr))
    failed = [r for r in results if not r.ok]
    if failed:
        print(f"README.md line {failed[0].block.line} failed:\n{failed[0].error}", file=sys.stderr)
        return 1
    text, code = README.read_text(), 0
    for r in results:
        exp = r.block.output
        if exp is None:
            continue
        new = updated(exp.body, r.stdout)
        if new is None:
            print(f"README.md line {exp.line}: the text differs (edit by hand); the block prints:\n{r.stdout}",
                  file=sys.stderr)
            code = 1
        elif new != exp.body:
            print(f"README.md line {exp.line}: numbers updated", file=sys.stderr)
            if args.update:
                text = text.replace(f"```text\n{exp.body}\n```", f"```text\n{new}\n```", 1)
    if args.update:
        README.write_text(text)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
