"""The hot path as a scheduler sees it: every call of the held-out sessions of the shared corpus,
as request dicts, through ``Predictor.predict`` at its emission and ``observe`` at its result, in
time order, in a fresh process with an empty ``TOOLLAT_CACHE``, for each bundle given. Beside
it, in the same process, LightGBM's own prepared single-row predict of the bundle's boosters on
the same calls' feature rows (what the trees cost before any of toollat's work). Writes
results_stream.md and results_stream.json.

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


def requests_of(df) -> list[dict]:
    """Canonical-table rows as the request dicts a scheduler sends (``Predictor.predict``)."""
    import math

    def ms(ts):
        return None if ts is None or ts != ts else (ts.value // 1000) / 1000.0

    def opt(v):
        return None if v is None or (isinstance(v, float) and math.isnan(v)) else v

    return [{"tool": r.tool_name, "args": r.args, "call_id": r.call_id, "session_id": r.session_id,
             "agent": opt(r.agent), "model": opt(r.model), "permission_mode": opt(r.permission_mode),
             "emitted_at": ms(r.emitted_at), "turn_started_at": ms(r.turn_started_at),
             "prev_turn_ended_at": ms(r.prev_turn_ended_at), "turn_index": opt(r.turn_index),
             "context_tokens": opt(r.context_tokens), "parallel_group": opt(r.parallel_group),
             "poll_of": opt(r.poll_of), "project": opt(r.project) or opt(r.source)}
            for r in df.itertuples()]


def child(model: str, out: str) -> None:
    """Runs in a fresh process: every timing of one bundle."""
    t0 = time.perf_counter()
    from toollat import Predictor

    p = Predictor.load(model)
    load_s = time.perf_counter() - t0
    light = sorted(m for m in HEAVY if m in sys.modules)

    import numpy as np

    from toollat.evaluation.splits import session_test_mask
    from toollat.ingest import load_calls
    from toollat.models.booster import RowPredictor
    from toollat.paths import corpus_dir

    df, _ = load_calls([corpus_dir()])
    df = df[session_test_mask(df["session_id"], 0.2, 0)].sort_values("emitted_at", kind="stable").reset_index(drop=True)
    reqs = requests_of(df)
    emitted = np.array([r["emitted_at"] for r in reqs])
    wall = df["wall_ms"].to_numpy(dtype=float)
    events = sorted([(emitted[i], 0, i) for i in range(len(df))] + [(emitted[i] + wall[i], 1, i) for i in range(len(df))])

    def replay() -> list[float]:
        lat = []
        for _, kind, i in events:
            if kind == 0:
                t = time.perf_counter()
                p.predict(reqs[i])
                lat.append(time.perf_counter() - t)
            else:
                p.observe(call_id=reqs[i]["call_id"], latency_ms=float(min(wall[i], 6e8)))
        return lat

    cold = replay()          # first pass: every text new to this process
    p.reset()
    seen = replay()          # second pass: the same texts again
    batch = []
    for _ in range(3):
        p.reset()
        t = time.perf_counter()
        p.predict_batch(reqs[:10_000])
        batch.append(min(len(reqs), 10_000) / (time.perf_counter() - t))
    # LightGBM alone, in this process: its prepared single-row path over the bundle's boosters, on
    # the feature rows of the stream's calls (what the model costs before any of toollat's work)
    lgbm = p.model.model_
    boosters = [*lgbm.heads, lgbm.long]
    from toollat.features.calls import Call

    p.reset()
    rows = [p.pipeline.online_row(Call.from_request(r), None, None)[0] for r in reqs[:4000]]
    fast = RowPredictor(boosters, len(rows[0]))
    t = time.perf_counter()
    for x in rows:
        fast.predict(x)
    lgb_rows_us = (time.perf_counter() - t) / len(rows) * 1e6

    def pct(v, q):
        return float(np.percentile(np.asarray(v) * 1e6, q))

    res = {"model": model, "calls": len(df), "sessions": int(df["session_id"].nunique()),
           "features": p.pipeline.config.embedder if p.pipeline.config.uses_text else "none",
           "boosters": len(boosters), "trees": sum(b.num_trees() for b in boosters),
           "import_and_load_s": load_s, "heavy_imported": ", ".join(light) or "none",
           "first_call_ms": cold[0] * 1e3, "stream_p50_us": pct(cold, 50), "stream_p99_us": pct(cold, 99),
           "seen_p50_us": pct(seen, 50), "seen_p99_us": pct(seen, 99), "batch_calls_per_s": max(batch),
           "lgb_all_boosters_us": lgb_rows_us, "torch_after_stream": "torch" in sys.modules}
    Path(out).write_text(json.dumps(res))


HEAVY = ("torch", "sentence_transformers", "transformers", "pandas", "scipy", "sklearn", "lightgbm", "pyarrow",
         "mlflow", "hydra", "dask", "matplotlib")


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
    rows = [("import + load (s)", "import_and_load_s", "{:.2f}"),
            ("heavy packages imported by load + predict", "heavy_imported", "{}"),
            ("torch imported after the stream", "torch_after_stream", "{}"),
            ("first call (ms)", "first_call_ms", "{:.1f}"), ("stream p50 (µs)", "stream_p50_us", "{:.0f}"),
            ("stream p99 (µs)", "stream_p99_us", "{:.0f}"), ("seen text p50 (µs)", "seen_p50_us", "{:.0f}"),
            ("seen text p99 (µs)", "seen_p99_us", "{:.0f}"),
            ("predict_batch, 10,000 calls (calls/s)", "batch_calls_per_s", "{:,.0f}"),
            ("LightGBM single-row predict, all boosters (µs)", "lgb_all_boosters_us", "{:.0f}"),
            ("stream p50 / LightGBM alone", None, None), ("boosters", "boosters", "{}"),
            ("trees (all boosters)", "trees", "{}")]
    lines = ["# Realistic stream: results", "",
             f"Held-out sessions of the shared corpus ({results[0]['calls']:,} calls, {results[0]['sessions']} sessions), "
             "each call sent as a request dict to `Predictor.predict` at its emission and observed at its result, in "
             "time order, in a fresh process with an empty TOOLLAT_CACHE. Beside it, in the same process, LightGBM's "
             "own prepared single-row predict of the same boosters on the same calls' feature rows. Written by "
             "`experiments/serving/stream.py` (run through `../shared/bin/heavy`, so nothing else ran).", "",
             "| | " + " | ".join(f"{r['model']} ({r['features']})" for r in results) + " |",
             "|---|" + "---|" * len(results)]
    for label, key, fmt in rows:
        if key is None:
            lines.append(f"| {label} | " + " | ".join(f"{r['stream_p50_us'] / r['lgb_all_boosters_us']:.1f}x" for r in results) + " |")
        else:
            lines.append(f"| {label} | " + " | ".join(fmt.format(r[key]) for r in results) + " |")
    lines += ["", "Targets (issue 20): stream p50 <= 300 µs, p99 <= 2 ms, first call <= 50 ms, import + load <= 0.5 s, "
              "torch never imported."]
    (HERE / "results_stream.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
