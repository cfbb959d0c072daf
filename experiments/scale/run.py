"""Scale-out benchmark; `--part ingest` is the ingest half (writes results_ingest.md beside this file).

For the corpus replicated x12 and x100 (``replicate.py``): `toollat ingest` in one process
(wall time, peak RSS) vs the same files read on a LocalCluster of 2 worker processes (wall
time, the driver's and each worker's peak RSS). Each run is its own child process; peaks come
from ``wait4`` (single process) and from ``getrusage`` inside the driver and each worker.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
MIB = 1024 * 1024


def single_process(corpus: Path, out: Path) -> dict:
    t = time.perf_counter()
    with tempfile.TemporaryFile() as so:
        proc = subprocess.Popen([sys.executable, "-m", "toollat.cli", "ingest", str(corpus), "--out", str(out), "--json"],
                                stdout=so, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        so.seek(0)
        summary = json.loads(so.read())
    assert os.waitstatus_to_exitcode(status) == 0
    return {"seconds": time.perf_counter() - t, "peak_rss": usage.ru_maxrss * 1024, "calls": summary["calls"]}


def dask_child(corpus: Path, out: Path, workers: int) -> None:
    """Runs in a child: ingest on a LocalCluster, print wall time and every process's peak RSS."""
    from toollat.ingest.cluster import client_for, ingest_on_cluster, write_dataset

    t = time.perf_counter()
    with client_for(f"local:{workers}") as client:
        table, report = ingest_on_cluster([corpus], client)
        write_dataset(table, out)
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        client.cluster.close()
    print(json.dumps({"seconds": time.perf_counter() - t, "calls": table.num_rows, "worker_peaks": sorted(peaks.values()),
                      "driver_peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))


def on_dask(corpus: Path, out: Path, workers: int) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--dask-child", str(corpus), str(out), str(workers)],
                          capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def part_ingest(args) -> str:
    from replicate import replicate_corpus
    from toollat.paths import corpus_dir

    work = Path(args.work)
    rows = []
    for n in args.copies:
        corpus = work / f"x{n}"
        t = time.perf_counter()
        replicate_corpus(corpus_dir(), corpus, n)
        built = time.perf_counter() - t
        single = single_process(corpus, work / f"x{n}.parquet")
        dask = on_dask(corpus, work / f"x{n}_dataset", args.workers)
        assert dask["calls"] == single["calls"], (dask["calls"], single["calls"])
        rows.append((n, built, single, dask))
        print(n, single, dask, flush=True)
    lines = [
        "# Scale-out: ingest", "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores (shared), Python {platform.python_version()}. "
        f"The shared corpus replicated (ids made unique per copy, `replicate.py`); Dask: LocalCluster of "
        f"{args.workers} worker processes, one thread each, the driver in the same child.", "",
        "| corpus | calls | single s | single peak RSS MiB | Dask s | speed-up | driver peak MiB | worker peaks MiB |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for n, built, s, d in rows:
        lines.append(f"| x{n} | {s['calls']:,} | {s['seconds']:.1f} | {s['peak_rss'] / MIB:,.0f} | {d['seconds']:.1f} | "
                     f"{s['seconds'] / d['seconds']:.2f}x | {d['driver_peak'] / MIB:,.0f} | "
                     + ", ".join(f"{p / MIB:,.0f}" for p in d["worker_peaks"]) + " |")
    lines += ["", "Both runs give the same number of calls (the tests check the tables are equal row for row).",
              "The workers read and parse; the driver concatenates their rows and runs the single-process "
              "`finalize` (de-duplication, sequence numbers), so the driver's memory, not the workers', "
              "grows with the corpus.", "",
              f"Rerun: `.venv/bin/python experiments/scale/run.py --part ingest --copies {' '.join(map(str, args.copies))}`", ""]
    return "\n".join(lines)


def part_train(args) -> None:
    """Each corpus size measured (Dask first, then one process), results_train.md rewritten after each."""
    import train

    rows = []
    for n in args.copies:
        rows.append(train.measure(Path(args.work), n, args.workers, single=n <= args.single_max))
        print(json.dumps(rows[-1]), flush=True)
        (HERE / "results_train.md").write_text(train.report(rows, args.workers))
    print(train.report(rows, args.workers))


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--dask-child":
        dask_child(Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--part", choices=["ingest", "train"], default="ingest")
    ap.add_argument("--copies", type=int, nargs="+", default=[12, 100])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--single-max", type=int, default=12,
                    help="train: the largest replication also trained in one process (x100 needs ~8x the x12 peak)")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "toollat-scale"),
                    help="where the replicated corpora are built (reused between runs)")
    args = ap.parse_args()
    if args.part == "train":  # the training half lives in train.py (results_train.md)
        part_train(args)
        return
    text = part_ingest(args)
    print(text)
    (HERE / "results_ingest.md").write_text(text)


if __name__ == "__main__":
    main()
