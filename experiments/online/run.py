"""Learning on the job (see README.md): prequential evaluation on held-out sessions and leave
one source out, with and without the cross-session project memory and the adaptive conformal
shifts. Writes results.json and results.md. One fit per split and feature set; the shifts are
switched on and off on the same fitted model (they change serving, not training)."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from toollat.config import compose
from toollat.estimator import MODEL, ToolLatencyModel
from toollat.evaluation.report import pool_predictions, report
from toollat.evaluation.prequential import prequential_scored
from toollat.evaluation.splits import session_test_mask, source_masks
from toollat.features.embed import Embedder
from toollat.ingest import load_calls
from toollat.jsonio import dumps
from toollat.paths import corpus_dir

HERE = Path(__file__).resolve().parent
FEATURES = {"base": [], "project": ["features=project"]}
SHIFTS = {"off": {"aci_step": 0.0}, "aci": {}}  # {} = conf/online/default.yaml
SHOW = ("mae_log10", "within_2x", "spearman", "coverage_p50", "coverage_p90", "long_recall", "long_precision",
        "long_pr_auc", "weighted_mae_log10")


def variants_of(model: ToolLatencyModel, df):
    """Prequential scores of one fitted model with each shift setting."""
    out = {}
    base_online = dict(model.online or {})
    for name, over in SHIFTS.items():
        model.online = {**base_online, **over}
        out[name] = prequential_scored(model, df)
    model.online = base_online
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--features", nargs="*", default=list(FEATURES))
    args = ap.parse_args()
    started = time.perf_counter()
    df, _ = load_calls([corpus_dir()])
    results: dict = {}
    for feat in args.features:
        cfg = compose(["+exp=all_tools", *FEATURES[feat]])
        emb = Embedder(Path(cfg["paths"]["cache"]))
        t = time.perf_counter()
        test = session_test_mask(df["session_id"], cfg["split"]["test_fraction"], cfg["seed"])
        m = ToolLatencyModel.from_config(cfg, emb).fit(df[~test].reset_index(drop=True))
        held = {k: report(*v) for k, v in variants_of(m, df[test].reset_index(drop=True)).items()}
        batch = report(*m.scored(df[test].reset_index(drop=True)))
        parts = {k: [] for k in SHIFTS}
        frames = []
        per_source = {k: {} for k in SHIFTS}
        for src, mask in source_masks(df["source"]):
            m = ToolLatencyModel.from_config(cfg, emb).fit(df[~mask].reset_index(drop=True))
            scored = variants_of(m, df[mask].reset_index(drop=True))
            for k, (calls, y, preds) in scored.items():
                parts[k].append(preds)
                per_source[k][src] = report(calls, y, preds)["models"]
            frames.append(scored["off"][:2])
            print(f"{feat} held out {src}: " + ", ".join(f"{k} {per_source[k][src][MODEL]['mae_log10']:.3f}" for k in SHIFTS)
                  + f" vs per_tool_median {per_source['off'][src]['per_tool_median']['mae_log10']:.3f}", flush=True)
        import numpy as np
        import pandas as pd

        calls = pd.concat([c for c, _ in frames], ignore_index=True)
        y = np.concatenate([v for _, v in frames])
        loso = {k: {**report(calls, y, pool_predictions(parts[k])), "per_source": per_source[k]} for k in SHIFTS}
        results[feat] = {"overrides": FEATURES[feat], "held_out_batch": batch, "held_out": held, "loso": loso,
                         "seconds": time.perf_counter() - t}
        (HERE / f"results_{feat}.json").write_text(dumps(results[feat]))
    write_md(merged(), df, time.perf_counter() - started)


def merged() -> dict:
    """Every feature set measured so far (one results_<features>.json each), in FEATURES order."""
    out = {}
    for feat in FEATURES:
        f = HERE / f"results_{feat}.json"
        if f.is_file():
            out[feat] = json.loads(f.read_text())
    return out


def _row(name, rep):
    m, b = rep["models"][MODEL], rep["models"]["per_tool_median"]
    return f"| {name} | {m['mae_log10'] / b['mae_log10']:.2f} | " + " | ".join(f"{m[k]:.3f}" for k in SHOW) + " |"


def write_md(results, df, seconds):
    head = ["| variant | mae / per_tool_median | " + " | ".join(SHOW) + " |", "|---|---|" + "---|" * len(SHOW)]
    lines = ["# Learning on the job: results", "",
             f"All tools, wall latency, {len(df):,} calls, {df.session_id.nunique()} sessions, {df.source.nunique()} sources; "
             f"prequential (every call predicted at emission, observed when its result is visible, in time order across "
             f"sessions). Written by `experiments/online/run.py` in {seconds / 60:.0f} min.", ""]
    for split, title in (("held_out", "Held-out sessions, prequential"), ("loso", "Leave one source out, prequential (pooled)")):
        lines += [f"## {title}", ""]
        any_rep = next(iter(results.values()))[split]["off"]
        lines += ["| baseline | " + " | ".join(SHOW) + " |", "|---|" + "---|" * len(SHOW)]
        for b in ("per_tool_median", "per_command_mean", "global_median"):
            lines.append(f"| {b} | " + " | ".join(f"{any_rep['models'][b][k]:.3f}" for k in SHOW) + " |")
        lines += ["", *head]
        if split == "held_out":
            lines += [_row(f"{f} (batch, no online)", r["held_out_batch"]) for f, r in results.items()]
        for f, r in results.items():
            for k, rep in r[split].items():
                lines.append(_row(f"features={f}, shifts={k}", rep))
        lines.append("")
        lines += ["coverage_p90 per family (families with >= 200 calls):", "",
                  "| variant | " + " | ".join(sorted(f for f, v in any_rep["per_family"][MODEL].items() if v["n"] >= 200)) + " |",
                  "|---|" + "---|" * sum(1 for v in any_rep["per_family"][MODEL].values() if v["n"] >= 200)]
        fams = sorted(f for f, v in any_rep["per_family"][MODEL].items() if v["n"] >= 200)
        for f, r in results.items():
            for k, rep in r[split].items():
                lines.append(f"| {f}/{k} | " + " | ".join(f"{rep['per_family'][MODEL][x]['coverage_p90']:.2f}" for x in fams) + " |")
        lines += ["", "mae_log10 per family, toollat vs per_tool_median (features=base, shifts=off):", "",
                  "| family | toollat | per_tool_median |", "|---|---|---|"]
        for x, v in sorted(any_rep["per_family"][MODEL].items()):
            lines.append(f"| {x} | {v['mae_log10']:.3f} | {any_rep['per_family']['per_tool_median'][x]['mae_log10']:.3f} |")
        lines.append("")
    lines += ["Rerun: `.venv/bin/python experiments/online/run.py`"]
    (HERE / "results.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
