"""The hot path on a realistic stream (see README.md, "Realistic stream"): every call of the
held-out sessions of the shared corpus, replayed through ``Predictor.predict`` and ``observe``
in time order, in a fresh process with an empty ``TOOLLAT_CACHE``, for each bundle given.
Beside each figure, LightGBM's own single-row ``predict`` of one head, measured in the same
process. Writes results_stream.md and results_stream.json.

    .venv/bin/python experiments/serving/stream.py --model default /path/to/static-bundle
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def child(model: str, out: str) -> None:
    """Runs in a fresh process: every timing of one bundle."""
    t0 = time.perf_counter()
    from toollat import Predictor

    p = Predictor.load(model)
    load_s = time.perf_counter() - t0
    torch_loaded = "torch" in sys.modules

    import numpy as np

    from toollat.evaluation.splits import session_test_mask
    from toollat.core.call import calls_from_frame
    from toollat.ingest import load_calls
    from toollat.paths import corpus_dir

    df, _ = load_calls([corpus_dir()])
    df = df[session_test_mask(df["session_id"], 0.2, 0)].reset_index(drop=True)
    calls = calls_from_frame(df)
    emitted = np.array([c.emitted_ms for c in calls])
    wall = df["wall_ms"].to_numpy(dtype=float)
    events = sorted([(emitted[i], 0, i) for i in range(len(df))] + [(emitted[i] + wall[i], 1, i) for i in range(len(df))])

    def replay() -> list[float]:
        lat = []
        for _, kind, i in events:
            if kind == 0:
                t = time.perf_counter()
                p.predict_calls([calls[i]])
                lat.append(time.perf_counter() - t)
            else:
                p.observe(call_id=calls[i].call_id, latency_ms=float(min(wall[i], 6e8)))
        return lat

    cold = replay()          # first pass: every text new to this process
    p.reset()
    seen = replay()          # second pass: the same texts again
    batch = []
    reqs = calls[:10_000]
    for _ in range(3):
        p.reset()
        t = time.perf_counter()
        p.predict_calls(reqs)
        batch.append(len(reqs) / (time.perf_counter() - t))
    head = p.model.model_.heads[p.levels.index(0.5)]
    x = np.zeros((1, head.num_feature()), dtype=np.float32)
    t = time.perf_counter()
    for _ in range(2000):
        head.predict(x)
    lgb_us = (time.perf_counter() - t) / 2000 * 1e6

    def pct(v, q):
        return float(np.percentile(np.asarray(v) * 1e6, q))

    res = {"model": model, "calls": len(df), "sessions": int(df["session_id"].nunique()),
           "features": p.pipeline.config.embedder if p.pipeline.config.uses_text else "none",
           "trees": sum(h.num_trees() for h in p.model.model_.heads) + p.model.model_.long.num_trees(),
           "import_and_load_s": load_s, "torch_imported": torch_loaded,
           "first_call_ms": cold[0] * 1e3, "stream_p50_us": pct(cold, 50), "stream_p99_us": pct(cold, 99),
           "seen_p50_us": pct(seen, 50), "seen_p99_us": pct(seen, 99), "batch_calls_per_s": max(batch),
           "lgb_one_head_us": lgb_us, "torch_after_stream": "torch" in sys.modules}
    Path(out).write_text(json.dumps(res))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", nargs="+", default=["default"])
    args = ap.parse_args()
    results = []
    for model in args.model:
        with tempfile.TemporaryDirectory() as cache, tempfile.NamedTemporaryFile(suffix=".json") as out:
            env = {**os.environ, "TOOLLAT_CACHE": cache}
            subprocess.run([sys.executable, __file__, "--child", model, out.name], check=True, env=env)
            results.append(json.loads(Path(out.name).read_text()))
            print(results[-1], flush=True)
    (HERE / "results_stream.json").write_text(json.dumps(results, indent=1))
    rows = [("import + load (s)", "import_and_load_s", "{:.2f}"), ("torch imported after load", "torch_imported", "{}"),
            ("first call (ms)", "first_call_ms", "{:.1f}"), ("stream p50 (µs)", "stream_p50_us", "{:.0f}"),
            ("stream p99 (µs)", "stream_p99_us", "{:.0f}"), ("seen text p50 (µs)", "seen_p50_us", "{:.0f}"),
            ("predict_batch, 10,000 calls (calls/s)", "batch_calls_per_s", "{:,.0f}"),
            ("LightGBM predict, one head, one row (µs)", "lgb_one_head_us", "{:.0f}"),
            ("stream p50 / LightGBM one-head predict", None, None), ("trees (all heads + classifier)", "trees", "{}")]
    lines = ["# Realistic stream: results", "",
             f"Held-out sessions of the shared corpus ({results[0]['calls']:,} calls, {results[0]['sessions']} sessions), "
             "each call predicted at its emission and observed at its result, in time order, in a fresh process with an "
             "empty TOOLLAT_CACHE. Written by `experiments/serving/stream.py`; 2 cores shared with other work.", "",
             "| | " + " | ".join(f"{r['model']} ({r['features']})" for r in results) + " |",
             "|---|" + "---|" * len(results)]
    for label, key, fmt in rows:
        if key is None:
            lines.append(f"| {label} | " + " | ".join(f"{r['stream_p50_us'] / r['lgb_one_head_us']:.1f}x" for r in results) + " |")
        else:
            lines.append(f"| {label} | " + " | ".join(fmt.format(r[key]) for r in results) + " |")
    lines += ["", "Targets (issue): stream p50 <= 300 µs, p99 <= 2 ms, first call <= 50 ms, seen text <= 50 µs p50, "
              "predict_batch >= 100,000 calls/s, import + load <= 1.5 s without torch."]
    (HERE / "results_stream.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
