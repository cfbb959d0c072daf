"""Training half of the scale-out benchmark (``run.py --part train``; writes results_train.md).

The calls table of the shared corpus (ingested once, cached in the work folder) replicated N
times with session, call and parent ids suffixed ``r<k>`` per copy: the table ``replicate.py``
logs give after ingest, without re-reading gigabytes of gzip. Written as a Parquet dataset of
one file per copy (one row group each), so every file holds whole sessions and is one Dask
partition. Then, each in its own child process:

- single process: ``ToolLatencyModel.fit`` on the whole table read with pandas (wall time,
  peak RSS from ``wait4``);
- Dask: a LocalCluster of 2 worker processes (one thread each), ``fit(executor=DaskExecutor)`` on
  ``dd.read_parquet`` of the dataset (the workers read the files), wall time, the driver's and
  each worker's peak RSS (``getrusage``), and the per-partition task times from the task stream.

Features ``no_embeddings`` (arguments, names, session context; no sentence embedding, no
neighbour memory) and a reduced LightGBM (80/60 trees, 2 calibration folds), so x100 fits on
this busy 2-core machine within the hour; both sides use the same settings.
"""
from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

MIB = 1024 * 1024
FEATURES = {"embeddings": False, "memory": False}
MODEL = {"kind": "lgbm", "calibration_folds": 2, "calibration_min": 200,
         "params": {"n_estimators": 80, "learning_rate": 0.1, "num_leaves": 63, "min_child_samples": 20},
         "classifier": {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 20}}
ID_COLUMNS = ("session_id", "call_id", "agent_id", "spawned_agent_id", "parent_call_id", "parallel_group")


def make_model():
    from toollat.estimator import ToolLatencyModel

    return ToolLatencyModel(features=FEATURES, model=MODEL, threads=1, seed=0)


def replicated_dataset(work: Path, copies: int) -> Path:
    """``work/train_x<copies>/r<k>.parquet``: the corpus calls table with ids made unique per copy."""
    import pandas as pd

    from toollat.ingest import ingest
    from toollat.paths import corpus_dir

    base = work / "calls_x1.parquet"
    if not base.exists():
        work.mkdir(parents=True, exist_ok=True)
        ingest([corpus_dir()]).to_pandas().to_parquet(base)
    out = work / f"train_x{copies}"
    if (out / ".done").exists():
        return out
    out.mkdir(parents=True, exist_ok=True)
    df = pd.read_parquet(base)
    for k in range(copies):
        part = df.copy()
        if k:
            for col in ID_COLUMNS:
                if col in part:
                    part[col] = part[col].where(part[col].isna(), part[col].astype(str) + f"r{k}")
        part.to_parquet(out / f"r{k:03d}.parquet", row_group_size=len(part) + 1)
    (out / ".done").write_text("ok\n")
    return out


def single_child(dataset: Path) -> None:
    import pandas as pd

    t = time.perf_counter()
    df = pd.read_parquet(dataset)
    m = make_model().fit(df)
    print(json.dumps({"seconds": time.perf_counter() - t, "calls": len(df), "train_calls": m.n_train_calls_,
                      "timings": m.timings_}))


def dask_child(dataset: Path, workers: int) -> None:
    import dask.dataframe as dd

    from distributed import get_task_stream

    from toollat.distributed import DaskExecutor, worker_peaks
    from toollat.ingest.cluster import client_for

    t = time.perf_counter()
    with client_for(f"local:{workers}") as client:
        calls = dd.read_parquet(str(dataset), split_row_groups=False)
        with get_task_stream(client) as ts:
            m = make_model().fit(calls, executor=DaskExecutor(client))
        tasks: dict[str, list[float]] = {}
        for task in ts.data:
            name = task["key"][0] if isinstance(task["key"], tuple) else str(task["key"])
            name = name.rsplit("-", 1)[0]
            for s in task["startstops"]:
                if s["action"] == "compute":
                    tasks.setdefault(name, []).append(s["stop"] - s["start"])
        peaks = worker_peaks(client)
        n_parts = calls.npartitions
        client.cluster.close()
    print(json.dumps({"seconds": time.perf_counter() - t, "train_calls": m.n_train_calls_, "timings": m.timings_,
                      "partitions": n_parts, "worker_peaks": peaks,
                      "driver_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      "tasks": {k: [len(v), sum(v)] for k, v in tasks.items()}}))


def _child(args: list[str]) -> dict:
    t = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{args} failed")
    res = json.loads(out.strip().splitlines()[-1])
    res["peak_rss"] = usage.ru_maxrss * 1024  # the largest process of the child's tree (wait4)
    res["wall"] = time.perf_counter() - t
    return res


def measure(work: Path, copies: int, workers: int, single: bool = True) -> dict:
    dataset = replicated_dataset(work, copies)
    rec = {"copies": copies, "calls": None}
    import pyarrow.parquet as pq

    rec["calls"] = sum(pq.ParquetFile(f).metadata.num_rows for f in sorted(dataset.glob("*.parquet")))
    rec["dask"] = _child(["--dask", str(dataset), str(workers)])
    rec["single"] = _child(["--single", str(dataset)]) if single else None
    return rec


def per_call_costs(d: dict) -> dict[str, float]:
    """Worker-seconds per training-table call of each task kind, from the task stream."""
    return {k: v[1] / d["calls"] for k, v in d["tasks"].items()}


def report(rows: list[dict], workers: int) -> str:
    lines = ["# Scale-out: training", "",
             f"Machine: 2 cores shared with other engineers' jobs; Dask LocalCluster of {workers} worker processes, "
             "one thread each. Features `no_embeddings`, reduced LightGBM (80/60 trees, 2 calibration folds), "
             "the same on both sides (`train.py` in this folder).", "",
             "| corpus | calls | in scope | single s | single peak RSS MiB | Dask s | Dask/single | driver peak MiB | worker peaks MiB | partitions |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        s, d = r["single"], r["dask"]
        single_s = f"{s['seconds']:.0f}" if s else "-"
        single_m = f"{s['peak_rss'] / MIB:,.0f}" if s else "-"
        ratio = f"{d['seconds'] / s['seconds']:.2f}x" if s else "-"
        lines.append(f"| x{r['copies']} | {r['calls']:,} | {d['train_calls']:,} | {single_s} | {single_m} | {d['seconds']:.0f} | {ratio} | "
                     f"{d['driver_peak'] / MIB:,.0f} | " + ", ".join(f"{p / MIB:,.0f}" for p in d["worker_peaks"]) + f" | {d['partitions']} |")
    lines += ["", "Phases (seconds; single: features / boosters+calibration+baselines; Dask the same split, measured on the driver):", ""]
    for r in rows:
        s, d = r["single"], r["dask"]
        st = s["timings"] if s else {}
        lines.append(f"- x{r['copies']}: single {st.get('seconds_features', float('nan')):.0f} / {st.get('seconds_fit', float('nan')):.0f}; "
                     f"Dask {d['timings']['seconds_features']:.0f} / {d['timings']['seconds_fit']:.0f}")
    big = rows[-1]
    d = big["dask"]
    costs = per_call_costs({**d, "calls": big["calls"]})
    survey = sum(v for k, v in costs.items() if "survey" in k)
    feat = sum(v for k, v in costs.items() if "featurize" in k)
    read = sum(v for k, v in costs.items() if "read" in k.lower() and "parquet" in k.lower())
    fit_per_call = d["timings"]["seconds_fit"] / d["train_calls"]
    in_scope = d["train_calls"] / big["calls"]
    lines += ["", "Single process above x12 is not run: its peak grows linearly with the calls (x12 figure times 8 for x100), more than this shared machine has free.", "", f"## Projection to 100M calls (from x{big['copies']})", "",
              "Measured worker-seconds per call (task stream, one thread per worker): "
              f"read {read * 1e6:.1f} us, survey {survey * 1e6:.1f} us, features {feat * 1e6:.1f} us; "
              f"boosters+calibration {fit_per_call * 1e6:.1f} us of wall per in-scope call on {len(d['worker_peaks'])} workers.",
              "Assumptions: partitions are independent (features scale with cores); data-parallel LightGBM scales "
              "with machines minus its per-iteration histogram all-reduce (not measured here: one machine); the "
              "driver's gathered narrow tables are ~50 bytes per in-scope call.", "",
              "| machines (2 cores each) | features h | boosters h | total h | worker memory GB (features, 2 workers/machine) | driver GB |",
              "|---|---|---|---|---|---|"]
    per_worker_bytes = max(d["worker_peaks"]) / (big["calls"] / len(d["worker_peaks"]))
    for n in (1, 4, 16, 64):
        cores = 2 * n
        f_h = 1e8 * (read + survey + feat) / cores / 3600
        b_h = 1e8 * in_scope * fit_per_call * len(d["worker_peaks"]) / cores / 3600
        mem = per_worker_bytes * 1e8 / cores / 1e9
        lines.append(f"| {n} | {f_h:.1f} | {b_h:.1f} | {f_h + b_h:.1f} | {mem:.1f} | {1e8 * in_scope * 50 / 1e9:.1f} |")
    lines += ["", "Worker memory projects each worker's peak linearly in its share of the calls (an upper bound: "
              "the peak includes the fixed ~300 MB of a Python worker).", "",
              "Rerun: `.venv/bin/python experiments/scale/run.py --part train --copies "
              + " ".join(str(r["copies"]) for r in rows) + "`", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1] == "--single":
        single_child(Path(sys.argv[2]))
    elif sys.argv[1] == "--dask":
        dask_child(Path(sys.argv[2]), int(sys.argv[3]))
