"""The shipped default's accuracy, static embedder vs MiniLM, over 3 seeds (see README.md).

Each chunk is one (embedder, seed): the `make default-model` configuration (`+exp=default_model`)
with `features=static` or `features=default` (MiniLM) and `seed=N`, scored on held-out sessions
(the seed also draws the held-out sessions) and leave-one-source-out, exactly as training scores
it. Chunks are written to `chunks/` and skipped when present, so the study resumes; `--report`
(also run after the chunks) writes results.md / results.json from whatever chunks exist.

    .venv/bin/python experiments/default_model/run.py                 # every missing chunk, then the report
    .venv/bin/python experiments/default_model/run.py --chunk static 1
    .venv/bin/python experiments/default_model/run.py --quick         # one seed, held-out only (dev)
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CHUNKS = HERE / "chunks"
EMBEDDERS = {"static": "static", "minilm": "default"}   # name -> conf/features group
SEEDS = (0, 1, 2)
KEYS = ("mae_log10", "within_2x", "spearman", "coverage_p90", "long_pr_auc", "long_pr_auc_30s", "p_long_ece",
        "weighted_mae_log10", "decision_gap_closed")


def chunk_path(embedder: str, seed: int, quick: bool) -> Path:
    return CHUNKS / f"{embedder}-s{seed}{'-quick' if quick else ''}.json"


def run_chunk(embedder: str, seed: int, quick: bool) -> dict:
    from toollat.config import compose
    from toollat.data import load, resolve
    from toollat.estimator import ToolLatencyModel
    from toollat.evaluation.evaluate import held_out, leave_one_source_out
    from toollat.features.embed import Embedder

    cfg = compose(["+exp=default_model", f"features={EMBEDDERS[embedder]}", f"seed={seed}"])
    df, _ = load(resolve("corpus", None), progress=False)
    embedder_obj = Embedder(Path(cfg["paths"]["cache"]), threads=cfg["threads"]) if embedder == "minilm" else None

    def make_model() -> ToolLatencyModel:
        return ToolLatencyModel.from_config(cfg, embedder_obj)

    t = time.perf_counter()
    _, held, _ = held_out(df, make_model, cfg["split"]["test_fraction"], seed)
    out = {"embedder": embedder, "seed": seed, "quick": quick, "calls": int(len(df)),
           "held_out": {m: held["models"][m] for m in held["models"]}}
    if not quick:
        loso = leave_one_source_out(df, make_model)
        out["loso"] = {m: loso["models"][m] for m in loso["models"]}
        out["loso_per_source"] = {s: {m: r[m]["mae_log10"] for m in r} for s, r in loso["per_source"].items()}
    out["seconds"] = time.perf_counter() - t
    return out


def report() -> None:
    import numpy as np

    chunks = [json.loads(p.read_text()) for p in sorted(CHUNKS.glob("*.json")) if not p.stem.endswith("-quick")]
    if not chunks:
        print("no chunks yet")
        return
    rows, summary = [], {}
    for emb in EMBEDDERS:
        mine = sorted((c for c in chunks if c["embedder"] == emb), key=lambda c: c["seed"])
        for split in ("held_out", "loso"):
            vals = {k: [c[split]["toollat"][k] for c in mine if split in c] for k in KEYS}
            base = [c[split]["per_tool_median"]["mae_log10"] for c in mine if split in c]
            if not base:
                continue
            summary[f"{emb}.{split}"] = {
                "seeds": [c["seed"] for c in mine if split in c],
                **{k: {"values": v, "mean": float(np.mean(v)), "min": float(np.min(v)), "max": float(np.max(v))} for k, v in vals.items()},
                "per_tool_median_mae_log10": base}
    (HERE / "results.json").write_text(json.dumps({"summary": summary, "chunks": chunks}, indent=1))
    lines = ["# The default bundle: static embedder vs MiniLM, 3 seeds", "",
             "Written by `experiments/default_model/run.py` from the chunks in `chunks/` (one per embedder and seed; "
             "each a `make default-model` configuration scored on held-out sessions, drawn by the seed, and "
             "leave-one-source-out). Values: mean over seeds [min, max].", ""]
    for split, title in (("held_out", "held-out sessions"), ("loso", "leave one source out (pooled)")):
        lines += [f"## {title}", "", "| metric | " + " | ".join(EMBEDDERS) + " |", "|---|" + "---:|" * len(EMBEDDERS)]
        for k in KEYS:
            cells = []
            for emb in EMBEDDERS:
                s = summary.get(f"{emb}.{split}")
                cells.append("n/a" if s is None else f"{s[k]['mean']:.4f} [{s[k]['min']:.4f}, {s[k]['max']:.4f}] (n={len(s['seeds'])})")
            lines.append(f"| {k} | " + " | ".join(cells) + " |")
        cells = []
        for emb in EMBEDDERS:
            s = summary.get(f"{emb}.{split}")
            cells.append("n/a" if s is None else f"{np.mean(s['per_tool_median_mae_log10']):.4f}")
        lines += [f"| per_tool_median mae_log10 | " + " | ".join(cells) + " |", ""]
    for split in ("held_out", "loso"):
        a, b = summary.get(f"static.{split}"), summary.get(f"minilm.{split}")
        if a and b:
            spread = max(a["mae_log10"]["max"] - a["mae_log10"]["min"], b["mae_log10"]["max"] - b["mae_log10"]["min"])
            diff = a["mae_log10"]["mean"] - b["mae_log10"]["mean"]
            lines.append(f"- {split}: static - MiniLM mae_log10 = {diff:+.4f} ({100 * diff / b['mae_log10']['mean']:+.1f}%); "
                         f"largest seed spread of either {spread:.4f}.")
    lines += ["", "Seconds per chunk: " + ", ".join(f"{c['embedder']} s{c['seed']}: {c['seconds']:.0f}" for c in chunks)]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunk", nargs=2, metavar=("EMBEDDER", "SEED"), help="run one chunk (static|minilm, seed)")
    ap.add_argument("--quick", action="store_true", help="held-out only, seed 0, static (a development slice)")
    ap.add_argument("--report", action="store_true", help="only write results.md / results.json from the chunks")
    ap.add_argument("--embedders", nargs="+", default=list(EMBEDDERS), choices=list(EMBEDDERS))
    args = ap.parse_args()
    CHUNKS.mkdir(exist_ok=True)
    if args.report:
        return report()
    todo = [(args.chunk[0], int(args.chunk[1]))] if args.chunk else \
        ([("static", 0)] if args.quick else [(e, s) for s in SEEDS for e in args.embedders])
    for emb, seed in todo:
        path = chunk_path(emb, seed, args.quick)
        if path.exists() and not args.chunk:
            print(f"{path.name}: done, skipped", file=sys.stderr)
            continue
        print(f"chunk {emb} seed {seed} ...", file=sys.stderr, flush=True)
        res = run_chunk(emb, seed, args.quick)
        path.write_text(json.dumps(res, indent=1))
        print(f"{path.name}: held-out mae {res['held_out']['toollat']['mae_log10']:.4f}"
              + (f", loso {res['loso']['toollat']['mae_log10']:.4f}" if "loso" in res else "")
              + f" in {res['seconds']:.0f} s", file=sys.stderr, flush=True)
    if not args.quick:
        report()


if __name__ == "__main__":
    main()
