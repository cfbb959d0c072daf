"""Schema-driven fuzzing of the HTTP API: `st run .../openapi.json --checks all` against a real
`toollat serve` on a free loopback port; writes results.md beside this file.

    .venv/bin/python experiments/schemathesis/run.py [--model default] [--out results.md]
"""
from __future__ import annotations

import argparse
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent


@dataclass
class FuzzResult:
    command: str
    exit_code: int
    generated: int
    passed: int
    failures: int
    seconds: float
    summary: str


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int, token: str) -> subprocess.Popen:
    # The server's log goes to a file: a pipe nobody reads fills up and then blocks the server.
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([str(BIN / "toollat"), "-q", "serve", "--model", model, "--port", str(port), "--token", token],
                            stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            log.seek(0)
            raise RuntimeError(f"toollat serve exited {proc.returncode}: {log.read().decode()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("toollat serve did not answer /healthz within 180 s")


def fuzz(model: str = "default", seed: int | None = 1) -> FuzzResult:
    port, token = free_port(), secrets.token_hex(8)
    server = start_server(model, port, token)
    cmd = [str(BIN / "st"), "run", f"http://127.0.0.1:{port}/openapi.json", "--checks", "all",
           "-H", f"Authorization:Bearer {token}", "--no-color"]
    if seed is not None:
        cmd += ["--seed", str(seed)]  # reruns generate the same cases
    try:
        t = time.perf_counter()
        run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        seconds = time.perf_counter() - t
    finally:
        server.terminate()
        server.wait(timeout=30)
    out = run.stdout
    m = re.search(r"(\d+) generated, (.*)", out)
    generated = int(m.group(1)) if m else 0
    rest = m.group(2) if m else ""
    passed = int(p.group(1)) if (p := re.search(r"(\d+) passed", rest)) else 0
    failures = int(f.group(1)) if (f := re.search(r"(\d+) unique failures?", rest)) else 0
    summary = out[out.rfind("\n", 0, out.find("SUMMARY")) + 1:] if "SUMMARY" in out else out[-3000:]
    shown = " ".join(["st", *cmd[1:]]).replace(token, "TOKEN").replace(str(port), "PORT")
    return FuzzResult(shown, run.returncode, generated, passed, failures, seconds, summary.strip())


def write(result: FuzzResult, model: str, out: Path) -> None:
    out.write_text(f"""# Schemathesis against `toollat serve` (written by run.py)

Model: `{model}`. Command (server on a free loopback port, token required):

    {result.command}

| cases generated | passed | unique failures | st exit code | seconds |
|---:|---:|---:|---:|---:|
| {result.generated} | {result.passed} | {result.failures} | {result.exit_code} | {result.seconds:.1f} |

```
{result.summary}
```
""")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=HERE / "results.md")
    a = ap.parse_args()
    result = fuzz(a.model, a.seed)
    write(result, a.model, a.out)
    print(f"{result.generated} cases, {result.failures} failures, st exit {result.exit_code} ({result.seconds:.0f} s) -> {a.out}")
    return 0 if result.exit_code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
