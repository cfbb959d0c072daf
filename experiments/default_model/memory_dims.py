"""How many dimensions the neighbour memory needs: 64 vs 32 (see README.md, "Memory dimensions").

The `make default-model` configuration (`+exp=default_model`, static embedder) with
`features.memory_dims` 64 or 32, seeds 0, 1 and 2, scored on held-out sessions (the seed draws
them) by the metrics module training uses. A serving call screens every memory entry once, so
the dimension sets that cost; the question is what accuracy the smaller memory gives up.
Each (dims, seed) is saved to memory_dims.json as soon as it is done and skipped on a rerun.

    .venv/bin/python experiments/default_model/memory_dims.py      # ~4 minutes here
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "memory_dims.json"
DIMS = (64, 32)
SEEDS = (0, 1, 2)
KEYS = ("mae_log10", "within_2x", "long_pr_auc", "long_pr_auc_30s", "coverage_p90", "decision_gap_closed",
        "weighted_mae_log10")


def main() -> None:
    from toollat.config import compose
    from toollat.data import load, resolve
    from toollat.estimator import ToolLatencyModel
    from toollat.evaluation.evaluate import held_out

    res = json.loads(OUT.read_text()) if OUT.exists() else {}
    df, _ = load(resolve("corpus", None), progress=False)
    for dims in DIMS:
        for seed in SEEDS:
            key = f"{dims}-{seed}"
            if key in res:
                continue
            cfg = compose(["+exp=default_model", "features=static", f"features.memory_dims={dims}", f"seed={seed}"])
            t = time.perf_counter()
            _, held, _ = held_out(df, lambda: ToolLatencyModel.from_config(cfg, None), cfg["split"]["test_fraction"], seed)
            res[key] = {k: held["models"]["toollat"][k] for k in KEYS}
            OUT.write_text(json.dumps(res, indent=1))
            print(key, f"mae {res[key]['mae_log10']:.4f} in {time.perf_counter() - t:.0f} s", flush=True)
    lines = ["# Neighbour-memory dimensions: 64 vs 32", "",
             "Written by `experiments/default_model/memory_dims.py`: the `make default-model` configuration "
             "(static embedder), held-out sessions, seeds 0-2; mean [min, max].", "",
             "| metric | " + " | ".join(f"{d} dims" for d in DIMS) + " |", "|---|" + "---:|" * len(DIMS)]
    for k in KEYS:
        cells = []
        for d in DIMS:
            v = np.array([res[f"{d}-{s}"][k] for s in SEEDS])
            cells.append(f"{v.mean():.4f} [{v.min():.4f}, {v.max():.4f}]")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    (HERE / "memory_dims.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
