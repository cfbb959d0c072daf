"""Hostile load against a real `toollat serve` on loopback: bounded in count and time, stops by itself.

    .venv/bin/python experiments/hostile_load/run.py [--model default] [--quick]

Phases run one after another while a prober asks /healthz every 50 ms and a sampler reads the
server's RSS every 0.5 s; every response status is counted. Writes results.md beside this file.
"""
from __future__ import annotations

import argparse
import collections
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import psutil

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
JSON = {"content-type": "application/json"}


class Load:
    def __init__(self, model: str, quick: bool):
        self.model, self.quick = model, quick
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.base = f"http://127.0.0.1:{self.port}"
        self.statuses: collections.Counter = collections.Counter()
        self.phase = "start"
        self.probes: list[tuple[str, float]] = []     # (phase, ms)
        self.rss: list[tuple[float, str, float]] = []  # (s since start, phase, MiB)
        self.notes: dict[str, str] = {}
        self.stop = threading.Event()
        self.t0 = time.monotonic()

    # -- server and observers -------------------------------------------------------------
    def start(self) -> None:
        # The server's log goes to a file: a pipe nobody reads fills up and then blocks the server.
        log = self.log = tempfile.TemporaryFile()
        self.server = subprocess.Popen(
            [str(BIN / "toollat"), "-q", "serve", "--model", self.model, "--port", str(self.port), "--max-new-texts", "2048"],
            stdout=subprocess.DEVNULL, stderr=log)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                log.seek(0)
                raise RuntimeError(log.read().decode()[-2000:])
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        else:
            raise RuntimeError("server did not start")
        self.proc = psutil.Process(self.server.pid)
        threading.Thread(target=self._probe, daemon=True).start()
        threading.Thread(target=self._sample, daemon=True).start()

    def _probe(self) -> None:
        with httpx.Client(base_url=self.base, timeout=30) as c:
            while not self.stop.is_set():
                t = time.perf_counter()
                try:
                    code = c.get("/healthz").status_code
                except httpx.HTTPError:
                    code = -1
                ms = (time.perf_counter() - t) * 1000
                self.probes.append((self.phase, ms if code == 200 else float("inf")))
                time.sleep(0.05)

    def _sample(self) -> None:
        while not self.stop.is_set():
            try:
                self.rss.append((time.monotonic() - self.t0, self.phase, self.proc.memory_info().rss / 2**20))
            except psutil.Error:
                return
            time.sleep(0.5)

    def post(self, c: httpx.Client, path: str, content: bytes, timeout: float = 300) -> int:
        try:
            code = c.post(path, content=content, headers=JSON, timeout=timeout).status_code
        except httpx.HTTPError as e:
            code = f"transport error: {type(e).__name__}"
        self.statuses[code] += 1
        return code

    # -- phases -----------------------------------------------------------------------------
    def huge_commands(self, c: httpx.Client) -> None:
        n, size = (4, 2) if self.quick else (15, 10)
        for i in range(n):  # distinct 10 MB commands (the body limit is 16 MB)
            cmd = f"echo {uuid.uuid4().hex} " + "x" * (size * 2**20)
            self.post(c, "/v1/predict", b'{"calls": [{"tool": "Bash", "args": {"command": "%s"}}]}' % cmd.encode())
        self.notes["huge_commands"] = f"{n} distinct commands of {size} MiB"

    def many_tools(self, c: httpx.Client) -> None:
        total, per = (100_000, 20_000) if self.quick else (1_000_000, 50_000)
        for start in range(0, total, per):
            obs = b",".join(b'{"session_id": "one", "tool": "T%d", "latency_ms": 5}' % i for i in range(start, start + per))
            self.post(c, "/v1/observe", b'{"observations": [' + obs + b"]}")
        self.notes["many_tools"] = f"{total:,} distinct tool names observed into one session, {per:,} per request"

    def deep_and_surrogates(self, c: httpx.Client) -> None:
        bodies = [
            b'{"calls": [{"tool": "Bash", "args": {"command": ' + b'{"a": ' * 600 + b"1" + b"}" * 600 + b"}}]}",
            b'{"calls": [{"tool": "Bash", "args": {"c": ' + b"[" * 1100 + b"]" * 1100 + b"}}]}",
            b'{"calls": [{"tool": "Bash", "args": "' + b"[" * 1000 + b"]" * 1000 + b'"}]}',
            b'{"calls": [{"tool": "Bash", "args": "{\\"command\\": \\"ls \\\\ud800\\"}"}]}',
            b'{"calls": [{"tool": "Bash", "args": {"command": "ls \\ud800"}}]}',
            b'[' * 100_000,
        ]
        for _ in range(20):
            for b in bodies:
                self.post(c, "/v1/predict", b)
        self.notes["deep_and_surrogates"] = f"{len(bodies)} kinds x 20: nesting 600/1,000/1,100/100,000, lone surrogates"

    def slow_bodies(self) -> None:
        n = 20 if self.quick else 50
        socks = []
        for _ in range(n):
            s = socket.create_connection(("127.0.0.1", self.port))
            s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:%d\r\ncontent-type: application/json\r\n"
                      b"content-length: 100000\r\n\r\n{" % self.port)
            socks.append(s)
        t = time.monotonic()
        answered = collections.Counter()
        for s in socks:  # a byte a second until the server gives up
            s.settimeout(0.01)
        pending = set(range(n))
        while pending and time.monotonic() - t < 60:
            for i in list(pending):
                try:
                    head = socks[i].recv(64)
                    answered[head.split(b" ")[1].decode() if head else "closed"] += 1
                    pending.discard(i)
                except (TimeoutError, BlockingIOError):
                    try:
                        socks[i].sendall(b" ")
                    except OSError:
                        pending.discard(i)
                        answered["reset"] += 1
            time.sleep(1)
        for s in socks:
            s.close()
        for k, v in answered.items():
            self.statuses[f"slow body: {k}"] += v
        self.notes["slow_bodies"] = (f"{n} bodies trickled a byte a second: {dict(answered)} after "
                                     f"{time.monotonic() - t:.0f} s ({len(pending)} still open)")

    def half_open(self) -> None:
        n = 300 if self.quick else 3000
        rss0 = self.proc.memory_info().rss / 2**20
        socks = []
        for i in range(n):
            s = socket.create_connection(("127.0.0.1", self.port))
            if i % 2:
                s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: a")
            socks.append(s)
        time.sleep(1)
        rss_open = self.proc.memory_info().rss / 2**20
        t = time.monotonic()
        closed = 0
        for s in socks:
            s.settimeout(max(0.1, 30 - (time.monotonic() - t)))
            try:
                if s.recv(10) == b"":
                    closed += 1
            except OSError:
                pass
            s.close()
        self.notes["half_open"] = (f"{n:,} connections (half silent, half a head that never ends): {closed:,} closed by the "
                                   f"server within {time.monotonic() - t:.1f} s of opening the last; RSS {rss0:.0f} -> "
                                   f"{rss_open:.0f} MiB while open")
        self.statuses[f"half-open: closed by server"] += closed
        self.statuses[f"half-open: not closed"] += n - closed

    def new_text_batch(self, c: httpx.Client) -> None:
        n = 200 if self.quick else 2000
        nonce = uuid.uuid4().hex
        calls = b",".join(b'{"tool": "Bash", "args": {"command": "pytest tests/t_%s_%d.py -k case_%d --maxfail=%d"}}'
                          % (nonce.encode(), i, i, i) for i in range(n))
        t = time.perf_counter()
        code = self.post(c, "/v1/predict", b'{"calls": [' + calls + b"]}", timeout=1800)
        self.notes["new_text_batch"] = f"{n:,} never-seen command texts in one request: {code} in {time.perf_counter() - t:.1f} s"

    def run(self) -> None:
        self.start()
        try:
            with httpx.Client(base_url=self.base) as c:
                for name, fn in [("idle", lambda: time.sleep(3)), ("huge_commands", lambda: self.huge_commands(c)),
                                 ("many_tools", lambda: self.many_tools(c)),
                                 ("deep_and_surrogates", lambda: self.deep_and_surrogates(c)),
                                 ("slow_bodies", self.slow_bodies), ("half_open", self.half_open),
                                 ("new_text_batch", lambda: self.new_text_batch(c)), ("after", lambda: time.sleep(3))]:
                    self.phase = name
                    t = time.monotonic()
                    fn()
                    self.notes.setdefault(name, "")
                    self.notes[name] += f" [{time.monotonic() - t:.1f} s]"
                    print(f"{name}: {self.notes[name]}", flush=True)
        finally:
            self.stop.set()
            time.sleep(0.6)
            self.server.terminate()
            self.server.wait(timeout=30)

    # -- report -----------------------------------------------------------------------------
    def write(self, out: Path) -> dict:
        codes = {str(k): v for k, v in sorted(self.statuses.items(), key=lambda kv: str(kv[0]))}
        five = sum(v for k, v in self.statuses.items() if isinstance(k, int) and k >= 500)
        rows = []
        phases = list(dict.fromkeys(p for p, _ in self.probes))
        for ph in phases + ["all"]:
            ms = np.array([m for p, m in self.probes if ph in ("all", p)])
            mib = [r for _, p, r in self.rss if ph in ("all", p)]
            if len(ms):
                rows.append(f"| {ph} | {len(ms)} | {np.percentile(ms, 50):.1f} | {np.percentile(ms, 99):.1f} | {ms.max():.1f} | "
                            f"{(min(mib) if mib else float('nan')):.0f} | {(max(mib) if mib else float('nan')):.0f} |")
        all_ms = np.array([m for _, m in self.probes])
        timeline = " ".join(f"{t:.0f}s:{r:.0f}" for t, _, r in self.rss[:: max(1, len(self.rss) // 40)])
        summary = {"5xx": five, "healthz_p99_ms": float(np.percentile(all_ms, 99)), "healthz_max_ms": float(all_ms.max()),
                   "rss_max_mib": max(r for *_, r in self.rss)}
        out.write_text(f"""# Hostile load on `toollat serve` (written by run.py)

Model `{self.model}`, server on 127.0.0.1, `--max-new-texts 2048` (so the 2,000-text batch is admitted), other limits
at their defaults (32 requests in flight, then 429); {'quick sizes (--quick)' if self.quick else 'full sizes'}; machine: {os.cpu_count()} cores shared.

**{five} responses 5xx**; `/healthz` p99 {summary['healthz_p99_ms']:.1f} ms, max {summary['healthz_max_ms']:.1f} ms over
{len(all_ms):,} probes; server RSS at most {summary['rss_max_mib']:.0f} MiB.

## Phases

{chr(10).join(f"- **{k}**: {v}" for k, v in self.notes.items())}

## /healthz latency (ms) and server RSS (MiB) by phase

| phase | probes | p50 | p99 | max | RSS min | RSS max |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

## Responses

| status | count |
|---|---:|
{chr(10).join(f"| {k} | {v} |" for k, v in codes.items())}

## RSS over time (s since start: MiB)

{timeline}
""")
        return summary


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--quick", action="store_true", help="smaller sizes (a smoke run, about a minute)")
    ap.add_argument("--out", type=Path, default=HERE / "results.md")
    a = ap.parse_args()
    load = Load(a.model, a.quick)
    load.run()
    summary = load.write(a.out)
    print(summary, "->", a.out)
    return 0 if summary["5xx"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
