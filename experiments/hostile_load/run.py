"""Hostile load against a real `toollat serve` on loopback: bounded in count and time, stops by itself.

    .venv/bin/python experiments/hostile_load/run.py [--model default] [--quick]

Phases run one after another while a prober (its own process) asks /healthz every 50 ms and a
sampler reads the server's RSS every 0.5 s; every response status is counted. Writes results.md
beside this file.
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
        self.memory: dict[str, dict] = {}              # GET /v1/model "memory" after some phases
        self.load: list[float] = []                    # the machine's 1-minute load average
        self.windows: list[tuple[str, float, float]] = []   # (phase, start, end), time.monotonic()
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
        # The prober is its own process: in this one, building a 10 MiB body or 2,000 calls holds
        # this process's GIL, and a prober thread here would time the client, not the server.
        self.probe_file = tempfile.NamedTemporaryFile("r", suffix=".probes")
        self.prober = subprocess.Popen([sys.executable, __file__, "--probe", self.base, self.probe_file.name])
        threading.Thread(target=self._sample, daemon=True).start()

    def _collect_probes(self) -> None:
        """The prober's (time, ms) lines, each given the phase that was running at its time."""
        self.prober.terminate()
        self.prober.wait(timeout=10)
        for line in open(self.probe_file.name):
            if len(line.split()) != 2:
                continue  # the line it was writing when terminated
            t, ms = (float(x) for x in line.split())
            phase = next((name for name, a, b in self.windows if a <= t < b), None)
            if phase is not None:
                self.probes.append((phase, ms))

    def _sample(self) -> None:
        while not self.stop.is_set():
            try:
                self.rss.append((time.monotonic() - self.t0, self.phase, self.proc.memory_info().rss / 2**20))
            except psutil.Error:
                return
            self.load.append(os.getloadavg()[0])  # other work on the machine competes for the same cores
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
        total, per, over = (100_000, 10_000, 20_000) if self.quick else (1_000_000, 10_000, 50_000)
        # one request past the per-request cap first: refused (413) before it is validated
        obs = b",".join(b'{"session_id": "one", "tool": "X%d", "latency_ms": 5}' % i for i in range(over))
        refused = self.post(c, "/v1/observe", b'{"observations": [' + obs + b"]}")
        for start in range(0, total, per):
            obs = b",".join(b'{"session_id": "one", "tool": "T%d", "latency_ms": 5}' % i for i in range(start, start + per))
            self.post(c, "/v1/observe", b'{"observations": [' + obs + b"]}")
        self.memory["after many_tools"] = c.get("/v1/model").json()["memory"]
        self.notes["many_tools"] = (f"{total:,} distinct tool names observed into one session, {per:,} per request "
                                    f"(one request of {over:,}: {refused})")

    def many_sessions(self, c: httpx.Client) -> None:
        total, per = (20_000, 2_000) if self.quick else (100_000, 2_000)
        for start in range(0, total, per):
            calls = b",".join(b'{"tool": "Bash", "args": {"command": "make t%d"}, "session_id": "m%d", "call_id": "m%d"}'
                              % (i % 50, i, i) for i in range(start, start + per))
            self.post(c, "/v1/predict", b'{"calls": [' + calls + b"]}")
            obs = b",".join(b'{"call_id": "m%d", "latency_ms": %d}' % (i, 100 + i % 900) for i in range(start, start + per))
            self.post(c, "/v1/observe", b'{"observations": [' + obs + b"]}")
        self.memory["after many_sessions"] = c.get("/v1/model").json()["memory"]
        self.notes["many_sessions"] = f"{total:,} distinct sessions, each one call predicted and observed, {per:,} per request"

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
                                 ("many_sessions", lambda: self.many_sessions(c)),
                                 ("deep_and_surrogates", lambda: self.deep_and_surrogates(c)),
                                 ("slow_bodies", self.slow_bodies), ("half_open", self.half_open),
                                 ("new_text_batch", lambda: self.new_text_batch(c)), ("after", lambda: time.sleep(3))]:
                    if name == "idle":
                        self.memory["start"] = c.get("/v1/model").json()["memory"]
                    self.phase = name
                    t = time.monotonic()
                    fn()
                    self.windows.append((name, t, time.monotonic()))
                    self.notes.setdefault(name, "")
                    self.notes[name] += f" [{time.monotonic() - t:.1f} s]"
                    print(f"{name}: {self.notes[name]}", flush=True)
                self.memory["end"] = c.get("/v1/model").json()["memory"]
        finally:
            self.stop.set()
            self._collect_probes()
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
        budget_mib = self.memory["start"]["budget_bytes"] / 2**20
        rss_start = self.rss[0][2]
        summary = {"5xx": five, "healthz_p99_ms": float(np.percentile(all_ms, 99)), "healthz_max_ms": float(all_ms.max()),
                   "rss_max_mib": max(r for *_, r in self.rss), "rss_start_mib": rss_start, "budget_mib": budget_mib,
                   "phases_over_50ms": [p for p in phases if np.percentile([m for q, m in self.probes if q == p], 99) >= 50]}
        mem_rows = []
        for when, m in self.memory.items():
            stores = " · ".join(f"{k} {v['bytes'] / 2**20:.1f}/{v['bound_bytes'] / 2**20:.0f} ({v['entries']:,})"
                                for k, v in m["stores"].items())
            mem_rows.append(f"| {when} | {m['bytes'] / 2**20:.1f} | {stores} |")
        out.write_text(f"""# Hostile load on `toollat serve` (written by run.py)

Model `{self.model}`, server on 127.0.0.1, `--max-new-texts 2048` (so the 2,000-text batch is admitted), other settings
from `conf/serving/default.yaml` (memory budget {budget_mib:.0f} MiB; 32 requests in flight, then 429; 10,000 calls or
observations per request, then 413; the features read a call's first 64 Ki characters of arguments);
{'quick sizes (--quick)' if self.quick else 'full sizes'}; machine: {os.cpu_count()} cores shared (1-minute load average
during the run {min(self.load):.1f} to {max(self.load):.1f}, this run included).

**{five} responses 5xx**; `/healthz` p99 {summary['healthz_p99_ms']:.1f} ms, max {summary['healthz_max_ms']:.1f} ms over
{len(all_ms):,} probes; phases with a p99 of 50 ms or more: {', '.join(summary['phases_over_50ms']) or 'none'}.
Server RSS at most {summary['rss_max_mib']:.0f} MiB: {rss_start:.0f} MiB loaded at start plus at most
{summary['rss_max_mib'] - rss_start:.0f} MiB, against the memory budget of {budget_mib:.0f} MiB for what clients grow
(RSS bound stated: start + budget = {rss_start + budget_mib:.0f} MiB, plus the requests in flight).

## Phases

{chr(10).join(f"- **{k}**: {v}" for k, v in self.notes.items())}

## /healthz latency (ms) and server RSS (MiB) by phase

| phase | probes | p50 | p99 | max | RSS min | RSS max |
|---|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

## What the stores hold (GET /v1/model `memory`: MiB held / MiB bound (entries))

| when | total MiB | stores |
|---|---:|---|
{chr(10).join(mem_rows)}

## Responses

| status | count |
|---|---:|
{chr(10).join(f"| {k} | {v} |" for k, v in codes.items())}

## RSS over time (s since start: MiB)

{timeline}
""")
        return summary


def probe(base: str, out: str) -> None:
    """``run.py --probe BASE FILE``: GET /healthz every 50 ms on a kept-alive connection, one
    "monotonic-time ms" line per probe (inf when it failed), until terminated."""
    with httpx.Client(base_url=base, timeout=30) as c, open(out, "w", buffering=1) as f:
        while True:
            t0, t = time.monotonic(), time.perf_counter()
            try:
                code = c.get("/healthz").status_code
            except httpx.HTTPError:
                code = -1
            ms = (time.perf_counter() - t) * 1000
            f.write(f"{t0:.4f} {ms if code == 200 else float('inf'):.3f}\n")
            time.sleep(0.05)


def main() -> int:
    if sys.argv[1:2] == ["--probe"]:
        probe(*sys.argv[2:4])
        return 0
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
