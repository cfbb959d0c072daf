"""Serving benchmarks: in-process latency, batch throughput, HTTP under wrk, and a soak run
(see README.md). The stream as a scheduler sees it is `stream.py`."""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import numpy as np

from toollat.ingest import load_calls
from toollat.paths import corpus_dir
from toollat.predictor import Predictor

HERE = Path(__file__).resolve().parent
N = 10_000


def requests_from_corpus(n: int) -> tuple[list[dict], list[float]]:
    """The first ``n`` calls of the corpus (by session) as the API takes them: arguments as objects, absent fields left out."""
    from stream import requests_of   # the stream's request dicts (this folder)

    df, _ = load_calls([corpus_dir()])
    df = df.sort_values(["session_id", "seq"]).head(n)
    reqs = [{k: (json.loads(v) if k == "args" else v) for k, v in r.items() if v is not None} for r in requests_of(df)]
    return reqs, df["wall_ms"].tolist()


def pct(xs, q):
    return float(np.percentile(np.asarray(xs), q))


def in_process(model: str, reqs: list[dict], walls: list[float]) -> dict:
    p = Predictor.load(model)
    p.predict_batch(reqs)  # warm: every text seen once (static features cached, embeddings computed)
    p.reset()
    lat = []
    for r, w in zip(reqs, walls):
        t = time.perf_counter()
        p.predict(r)
        lat.append(time.perf_counter() - t)
        p.observe(call_id=r["call_id"], latency_ms=w)
    fresh = []
    run = uuid.uuid4().hex[:8]  # never seen in any run before: the embedding cache on disk must miss
    for i in range(300):
        r = {"tool": "Bash", "args": {"command": f"pytest tests/test_probe_{run}_{i}.py -k case_{i * 7919 % 1000}"},
             "session_id": "probe"}
        t = time.perf_counter()
        p.predict(r)
        fresh.append(time.perf_counter() - t)
    batch = []
    for _ in range(3):
        p.reset()
        t = time.perf_counter()
        p.predict_batch(reqs)
        batch.append(len(reqs) / (time.perf_counter() - t))
    # baselines, same process
    head = p.model.model_.heads[0]
    x = np.zeros((1, head.num_feature()), dtype=np.float32)
    t = time.perf_counter()
    for _ in range(2000):
        head.predict(x)
    lgb_one = (time.perf_counter() - t) / 2000
    t = time.perf_counter()
    for _ in range(2000):
        p.model.model_.raw_one(x[0])
    raw_all = (time.perf_counter() - t) / 2000
    return {"seen_p50_us": pct(lat, 50) * 1e6, "seen_p99_us": pct(lat, 99) * 1e6,
            "unseen_p50_ms": pct(fresh, 50) * 1e3, "unseen_p99_ms": pct(fresh, 99) * 1e3,
            "batch_calls_per_s": max(batch), "lgb_predict_one_head_us": lgb_one * 1e6,
            "raw_all_heads_us": raw_all * 1e6, "trees_per_head": head.num_trees()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, port: int) -> subprocess.Popen:
    """`toollat serve` with the shipped settings (conf/serving/default.yaml: the 512 MB memory budget)."""
    proc = subprocess.Popen([sys.executable, "-m", "toollat.cli", "serve", "--model", model, "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return proc
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit("server did not start")


def wrk(port: int, lua: str, seconds: int, conns: int = 16, threads: int = 2) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(lua)
    out = subprocess.run(["wrk", f"-t{threads}", f"-c{conns}", f"-d{seconds}s", "--latency", "-s", f.name,
                          f"http://127.0.0.1:{port}"], capture_output=True, text=True).stdout
    os.unlink(f.name)

    def ms(label):
        m = re.search(rf"^\s+{label}\s+([\d.]+)(us|ms|s)", out, re.M)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m.group(2)]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {"rps": rps, "p50_ms": ms("50%"), "p99_ms": ms("99%"), "non_2xx": int(non2xx.group(1)) if non2xx else 0,
            "socket_errors": errors.group(1) if errors else "none", "raw": out}


def post_lua(body: str) -> str:
    return ('wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            f"wrk.body = {json.dumps(body)}\n")


SOAK_LUA = r'''
local n = 0
local counter = 0
request = function()
  n = n + 1
  local sid = math.random(1, SESSIONS)
  if n % 2 == 1 then
    counter = counter + 1
    local body = string.format('{"calls":[{"tool":"Bash","args":{"command":"go test ./pkg%d/..."},"session_id":"soak-%d","call_id":"c%d-%d"}]}', counter % 200, sid, counter, sid)
    last = string.format('c%d-%d', counter, sid)
    return wrk.format("POST", "/v1/predict", {["Content-Type"]="application/json"}, body)
  else
    local body = string.format('{"observations":[{"call_id":"%s","latency_ms":%d}]}', last, math.random(5, 120000))
    return wrk.format("POST", "/v1/observe", {["Content-Type"]="application/json"}, body)
  end
end
'''


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


SOAK_SESSIONS = 50_000


def soak(model: str, seconds: int) -> dict:
    port = free_port()
    server = start_server(model, port)
    samples, stop = [], threading.Event()

    def sample():
        t0 = time.time()
        while not stop.is_set():
            samples.append((time.time() - t0, rss_mb(server.pid)))
            stop.wait(2)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    try:
        res = wrk(port, SOAK_LUA.replace("SESSIONS", str(SOAK_SESSIONS)), seconds, conns=8)
        info = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/model").read())
    finally:
        stop.set()
        th.join()
        server.terminate()
        server.wait(10)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.plot([s[0] for s in samples], [s[1] for s in samples])
    ax.set_xlabel("seconds")
    ax.set_ylabel("server RSS, MB")
    ax.set_title(f"soak: predict/observe over {SOAK_SESSIONS:,} sessions ({res['rps']:.0f} req/s)")
    ax.set_ylim(0, max(s[1] for s in samples) * 1.15)
    fig.tight_layout()
    fig.savefig(HERE / "soak_rss.png", dpi=110)
    rss = [s[1] for s in samples]
    third = max(len(rss) // 3, 1)
    first, last = statistics.mean(rss[:third]), statistics.mean(rss[-third:])
    return {"seconds": seconds, "rps": res["rps"], "requests": int(res["rps"] * seconds), "non_2xx": res["non_2xx"],
            "socket_errors": res["socket_errors"], "rss_start_mb": rss[0], "rss_max_mb": max(rss),
            "rss_end_mb": rss[-1], "rss_first_third_max_mb": max(rss[:third]), "rss_last_third_max_mb": max(rss[-third:]),
            "rss_first_third_mean_mb": first, "rss_last_third_mean_mb": last, "rss_growth": last / first - 1.0,
            "sessions": info["state"]["sessions"], "evicted": info["state"]["evicted_sessions"], "p99_ms": res["p99_ms"]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="default")
    ap.add_argument("--soak-s", type=int, default=600)
    args = ap.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed for the HTTP benchmarks (apt-get install wrk)")
    reqs, walls = requests_from_corpus(N)
    ip = in_process(args.model, reqs, walls)
    port = free_port()
    server = start_server(args.model, port)
    try:
        one = json.dumps({"calls": [{k: v for k, v in reqs[0].items()}]})
        b64 = json.dumps({"calls": reqs[:64]})
        urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/v1/predict", b64.encode(),
                                                      {"Content-Type": "application/json"}))  # warm
        http1 = wrk(port, post_lua(one).replace('wrk.method', 'wrk.path = "/v1/predict"\nwrk.method'), 20)
        http64 = wrk(port, post_lua(b64).replace('wrk.method', 'wrk.path = "/v1/predict"\nwrk.method'), 20)
    finally:
        server.terminate()
        server.wait(10)
    sk = soak(args.model, args.soak_s)

    t = lambda ok: "holds" if ok else "**does not hold**"  # noqa: E731
    lines = [
        "# Serving: results", "",
        f"Model `{args.model}` ({ip['trees_per_head']} trees per head, 5 boosters), 2 cores, Python {sys.version.split()[0]}. "
        "Written by `experiments/serving/run.py`.", "",
        "## In process", "",
        "| measure | value | target |", "|---|---|---|",
        f"| predict, text seen before: p50 / p99 | {ip['seen_p50_us']:.0f} / {ip['seen_p99_us']:.0f} µs | |",
        f"| predict, never-seen command: p50 / p99 | {ip['unseen_p50_ms']:.2f} / {ip['unseen_p99_ms']:.2f} ms | |",
        f"| predict_batch of 10,000 seen calls | {ip['batch_calls_per_s']:,.0f} calls/s | |",
        f"| baseline: LightGBM `Booster.predict`, one row, one head | {ip['lgb_predict_one_head_us']:.0f} µs | |",
        f"| toollat's raw single-row path, all five boosters | {ip['raw_all_heads_us']:.0f} µs ({ip['raw_all_heads_us'] / ip['lgb_predict_one_head_us']:.2f}x one head via predict) | |",
        "", "## HTTP on loopback (wrk, 16 connections, 20 s)", "",
        "| load | requests/s | predictions/s | p50 | p99 | non-2xx | target |", "|---|---|---|---|---|---|---|",
        f"| batch 1 | {http1['rps']:,.0f} | {http1['rps']:,.0f} | {http1['p50_ms']:.2f} ms | {http1['p99_ms']:.2f} ms | {http1['non_2xx']} | "
        f">= 2,000/s with p99 <= 10 ms: {t(http1['rps'] >= 2000 and http1['p99_ms'] <= 10)} |",
        f"| batch 64 | {http64['rps']:,.0f} | {http64['rps'] * 64:,.0f} | {http64['p50_ms']:.2f} ms | {http64['p99_ms']:.2f} ms | {http64['non_2xx']} | "
        f">= 50,000/s: {t(http64['rps'] * 64 >= 50_000)} |",
        "", "## Soak", "",
        f"{sk['seconds']} s of alternating predict/observe over {SOAK_SESSIONS:,} distinct sessions, the server with its shipped "
        f"memory budget: {sk['requests']:,} requests "
        f"({sk['rps']:,.0f}/s, p99 {sk['p99_ms']:.1f} ms), non-2xx responses {sk['non_2xx']}, socket errors {sk['socket_errors']}. "
        f"Sessions held at the end {sk['sessions']:,} (evicted {sk['evicted']:,}). Server RSS: start {sk['rss_start_mb']:.0f} MB, "
        f"max {sk['rss_max_mb']:.0f} MB, end {sk['rss_end_mb']:.0f} MB; max in the first third {sk['rss_first_third_max_mb']:.0f} MB, "
        f"in the last third {sk['rss_last_third_max_mb']:.0f} MB; mean of the last third vs the first: "
        f"{100 * sk['rss_growth']:+.1f}% (target: within 5%, and 0 non-2xx: "
        f"{t(abs(sk['rss_growth']) <= 0.05 and sk['non_2xx'] == 0)}).", "", "![RSS](soak_rss.png)", "",
        "Rerun: `.venv/bin/python experiments/serving/run.py --model default`",
    ]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    (HERE / "results.json").write_text(json.dumps({"in_process": ip, "http_batch1": {k: v for k, v in http1.items() if k != 'raw'},
                                                   "http_batch64": {k: v for k, v in http64.items() if k != 'raw'}, "soak": sk}, indent=1))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
