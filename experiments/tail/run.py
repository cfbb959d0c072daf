"""The long tail (see README.md): leave one source out over the five shared sources, each
held-out source scored in batch and prequentially (``toollat evaluate --online``'s replay) by a
model fit on the other four, for every variant in ``VARIANTS`` and seed in ``SEEDS``; the
figures issue 19 must hold, for toollat and the baselines. Writes results.md and results.json.

A unit of work is one (variant, seed, held-out source): one fit, its batch and prequential
predictions saved under ``.cache/`` (git-ignored) as soon as they exist. A run starts no unit it
expects to end after ``--budget-min`` minutes (the slowest unit so far) and writes what it has; the next run resumes with the
units still missing. ``--quick``: a fifth of the sessions, one seed, smaller models (its own
cache and results under ``.cache/quick/``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from toollat.config import compose
from toollat.estimator import BASELINE_ORDER, MODEL, ToolLatencyModel
from toollat.evaluation.evaluate import pool_predictions, report
from toollat.evaluation.prequential import prequential_scored
from toollat.evaluation.splits import session_test_mask, source_masks
from toollat.jsonio import dumps
from toollat.models import Prediction
from toollat.paths import corpus_dir

HERE = Path(__file__).resolve().parent
# One row per variant: Hydra overrides on top of +exp=all_tools. A new feature group is one more
# entry here. "today" is the before; each tail group (issue 19) is today plus that group alone,
# "tail" every group together.
# memory_dims=64: the dimension the "before" ran with (conf/features/static.yaml says 32 since
# main's 08acab3, measured equal), pinned so the saved units of every variant stay comparable
_TODAY = ["features=static", "features.memory_dims=64"]
_EXCEED = ["model.exceed_s=[10,30,300]"]
VARIANTS: dict[str, list[str]] = {
    "today": _TODAY,
    "approval": [*_TODAY, "features.approval=true"],
    "subagents": [*_TODAY, "features.subagents=true"],
    "polls": [*_TODAY, "features.polls=true"],
    "project": [*_TODAY, "features.project=true"],
    "exceed": [*_TODAY, *_EXCEED],
    "tail": [*_TODAY, "features.approval=true", "features.subagents=true", "features.polls=true",
             "features.project=true", *_EXCEED],
    "project_exceed": [*_TODAY, "features.project=true", *_EXCEED],
    "tail_no_approval": [*_TODAY, "features.subagents=true", "features.polls=true", "features.project=true", *_EXCEED],
}
# what a plain run measures over every seed: the before, the kept group and the runner-up
DEFAULT_VARIANTS: tuple[str, ...] = ("today", "project", "project_exceed")
SEEDS: tuple[int, ...] = (0, 1, 2)
MODES: tuple[str, ...] = ("batch", "prequential")
MODELS: tuple[str, ...] = (MODEL, *BASELINE_ORDER)
QUICK_OVERRIDES = ["model.params.n_estimators=120", "model.classifier.n_estimators=80"]
QUICK_FRACTION = 0.2
SHOW = ("decision_gap_closed", "decision_cost", "long_pr_auc", "long_pr_auc_30s", "p_long_ece",
        "weighted_mae_log10", "mae_log10", "coverage_p90")


# -- data -------------------------------------------------------------------------------------------
def corpus_calls(cache: Path) -> pd.DataFrame:
    """The shared corpus as the canonical table, ingested once per corpus and ingest code."""
    root = corpus_dir()
    if not root.is_dir():
        sys.exit(f"shared corpus not found at {root} (set TOOLLAT_SHARED)")
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.relative_to(root)}\x1f{st.st_size}\x1f{st.st_mtime_ns}\n".encode())
    for p in sorted((Path(__file__).resolve().parents[2] / "toollat" / "ingest").glob("*.py")):
        h.update(p.read_bytes())
    path = cache / f"corpus-{h.hexdigest()[:16]}.parquet"
    if path.is_file():
        return pd.read_parquet(path)
    from toollat.ingest import ingest, write_calls

    result = ingest([root], progress=True)
    cache.mkdir(parents=True, exist_ok=True)
    write_calls(result.table, path)
    return result.to_pandas()


# -- one unit: fit on four sources, score the fifth in batch and prequentially ------------------------
def unit_path(cache: Path, variant: str, seed: int, source: str) -> Path:
    return cache / "units" / variant / f"seed{seed}" / f"{source}.npz"


def run_unit(df: pd.DataFrame, mask: np.ndarray, overrides: list[str], seed: int, path: Path) -> dict[str, float]:
    cfg = compose(["+exp=all_tools", *overrides, f"seed={seed}", "progress=false"])
    t = time.perf_counter()
    model = ToolLatencyModel.from_config(cfg).fit(df[~mask].reset_index(drop=True))
    seconds = {"fit": time.perf_counter() - t}
    held = df[mask].reset_index(drop=True)
    arrays: dict[str, np.ndarray] = {}
    for mode, score in (("batch", model.scored), ("prequential", prequential_scored)):
        t = time.perf_counter()
        calls, y, preds = score(held) if mode == "batch" else score(model, held)
        seconds[mode] = time.perf_counter() - t
        arrays[f"{mode}.y"] = np.asarray(y, dtype=np.float64)
        arrays[f"{mode}.family"] = calls["tool_family"].to_numpy(dtype=str)
        arrays[f"{mode}.call_id"] = calls["call_id"].to_numpy(dtype=str)
        for name, (pred, thr) in preds.items():
            arrays[f"{mode}.{name}.q"] = pred.quantiles
            arrays[f"{mode}.{name}.p_long"] = pred.p_long
            arrays[f"{mode}.{name}.thr"] = np.asarray(thr, dtype=np.float64)
    arrays["levels"] = np.asarray(model.model_.levels, dtype=np.float64)
    arrays["costs"] = np.asarray([getattr(model.hint_costs, k) for k in COST_KEYS], dtype=np.float64)
    arrays["seconds"] = np.asarray([seconds["fit"], seconds["batch"], seconds["prequential"]])
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)  # a killed run leaves no half-written unit
    return seconds


COST_KEYS = ("breakeven_s", "offload_cost_s", "offload_hold_ratio", "min_ttl_ms")


def load_unit(path: Path, mode: str):
    from toollat.hints import HintCosts

    z = np.load(path, allow_pickle=False)
    levels = tuple(float(x) for x in z["levels"])
    calls = pd.DataFrame({"tool_family": z[f"{mode}.family"], "call_id": z[f"{mode}.call_id"]})
    preds = {name: (Prediction(levels, z[f"{mode}.{name}.q"], z[f"{mode}.{name}.p_long"]), float(z[f"{mode}.{name}.thr"]))
             for name in MODELS}
    costs = HintCosts(**dict(zip(COST_KEYS, (float(x) for x in z["costs"]))))
    return calls, z[f"{mode}.y"], preds, costs, z["seconds"]


# -- pooling and the tables ----------------------------------------------------------------------
def pooled(cache: Path, variant: str, seed: int, sources: list[str], mode: str) -> dict | None:
    """The report of one (variant, seed, mode) pooled over the held-out sources; None if a unit is missing."""
    paths = [unit_path(cache, variant, seed, s) for s in sources]
    if not all(p.is_file() for p in paths):
        return None
    units = [load_unit(p, mode) for p in paths]
    costs = units[0][3]
    rep = report(pd.concat([u[0] for u in units], ignore_index=True), np.concatenate([u[1] for u in units]),
                 pool_predictions([u[2] for u in units]), costs=costs)
    rep["per_source"] = {s: report(u[0], u[1], u[2], costs=costs)["models"] for s, u in zip(sources, units)}
    rep["seconds"] = {s: dict(zip(("fit", "batch", "prequential"), u[4].tolist())) for s, u in zip(sources, units)}
    return rep


def spread(values: list[float]) -> str:
    v = [x for x in values if x is not None and x == x]
    if not v:
        return "n/a"
    if len(v) == 1 or max(v) - min(v) < 5e-4:
        return f"{v[0]:.3f}" if len(v) == 1 else f"{np.mean(v):.3f}"
    return f"{np.mean(v):.3f} [{min(v):.3f}, {max(v):.3f}]"


MUST = (  # (label, metric, test on toollat's value and per_tool_median's)
    ("decision_gap_closed >= 0.35", "decision_gap_closed", lambda m, b: m >= 0.35),
    ("long (>= 60 s) PR-AUC >= 0.50", "long_pr_auc", lambda m, b: m >= 0.50),
    ("time-weighted MAE below per_tool_median's", "weighted_mae_log10", lambda m, b: m < b),
    ("mae_log10 <= 0.55 x per_tool_median's", "mae_log10", lambda m, b: m <= 0.55 * b),
    ("coverage_p90 in [0.87, 0.93]", "coverage_p90", lambda m, b: 0.87 <= m <= 0.93),
    ("p_long ECE <= 0.03", "p_long_ece", lambda m, b: m <= 0.03),
)


def write_md(results: dict, meta: dict, out: Path) -> str:
    lines = ["# The long tail: results", "",
             f"{meta['calls']:,} calls, {meta['sessions']} sessions, {meta['sources']} sources (all tools, wall time); "
             f"leave one source out, each held-out source scored in batch (every session replayed from an empty "
             f"history) and prequentially (every call in time order, predicted at emission, observed when its result "
             f"is visible: `toollat evaluate --online`). Seeds {list(meta['seeds'])}; a figure shown as "
             f"`mean [min, max]` varies over the seeds, one number does not. Written by `experiments/tail/run.py"
             f"{' --quick' if meta['quick'] else ''}`; {meta['complete']}.", ""]
    lines += ablation(results)
    for variant, by_mode in results.items():
        for mode, reps in by_mode.items():
            reps = {s: r for s, r in reps.items() if r is not None}
            if not reps:
                lines += [f"## {variant}, {mode}: not run yet", ""]
                continue
            first = next(iter(reps.values()))
            lines += [f"## {variant}: leave one source out, {mode} (pooled, n = {first['n']:,})", ""]
            m = {s: r["models"] for s, r in reps.items()}
            lines += ["Must hold (issue 19), toollat:", "", "| target | toollat | per_tool_median | holds |", "|---|---|---|---|"]
            for label, key, test in MUST:
                tv = [m[s][MODEL][key] for s in m]
                bv = [m[s]["per_tool_median"][key] for s in m]
                held = [test(a, b) for a, b in zip(tv, bv)]
                verdict = "yes" if all(held) else ("**no**" if not any(held) else "some seeds")
                if key == "mae_log10":
                    tv = [a / b for a, b in zip(tv, bv)]
                    bv = [1.0] * len(bv)
                lines.append(f"| {label} | {spread(tv)}{' x' if key == 'mae_log10' else ''} | {spread(bv)}{' x' if key == 'mae_log10' else ''} | {verdict} |")
            lines += ["", "Every model (decision costs in GPU-hold seconds per call; the oracle's: "
                      + spread([r["decision"]["oracle_cost"] for r in reps.values()]) + "):", "",
                      "| model | " + " | ".join(SHOW) + " |", "|---|" + "---|" * len(SHOW)]
            for name in MODELS:
                lines.append(f"| {name} | " + " | ".join(spread([m[s][name][k] for s in m]) for k in SHOW) + " |")
            lines += ["", "Per held-out source, toollat vs per_tool_median (seed "
                      f"{min(reps)}):", "",
                      "| held-out source | n | decision_gap_closed | long_pr_auc (toollat / per-tool) | weighted_mae_log10 (toollat / per-tool) | mae ratio | coverage_p90 | p_long_ece |",
                      "|---|---|---|---|---|---|---|---|"]
            for src, pm in first["per_source"].items():
                t, b = pm[MODEL], pm["per_tool_median"]
                lines.append(f"| {src} | {t['n']:,} | {_f(t['decision_gap_closed'])} | {_f(t['long_pr_auc'])} / {_f(b['long_pr_auc'])} | "
                             f"{_f(t['weighted_mae_log10'])} / {_f(b['weighted_mae_log10'])} | {_f(t['mae_log10'] / b['mae_log10'])} | "
                             f"{_f(t['coverage_p90'])} | {_f(t['p_long_ece'])} |")
            lines.append("")
    secs = meta.get("unit_seconds") or []
    if secs:
        lines += [f"Time: {len(secs)} units (fit on four sources, batch and prequential scoring of the fifth), "
                  f"{sum(s[0] for s in secs) / 60:.1f} min fitting, {sum(s[1] for s in secs) / 60:.1f} min batch, "
                  f"{sum(s[2] for s in secs) / 60:.1f} min prequential, on this 2-core machine.", ""]
    lines += ["Rerun: `.venv/bin/python experiments/tail/run.py` (resumes from `.cache/`; `--fresh` starts over)."]
    text = "\n".join(lines) + "\n"
    out.write_text(text)
    return text


ABLATION = (("decision_gap_closed", "decision_gap_closed"), ("long_pr_auc", "long PR-AUC"),
            ("long_pr_auc_30s", "PR-AUC at 30 s"), ("weighted_mae_log10", "time-weighted MAE"),
            ("mae_log10", "mae ratio"), ("coverage_p90", "coverage_p90"), ("p_long_ece", "p_long ECE"))


def ablation(results: dict) -> list[str]:
    """One row per variant and mode: toollat's pooled figures over the seeds it has (the mae
    ratio is to per_tool_median's), so a feature group's row reads against today's."""
    lines = ["## Ablation: which feature group earns its place", "",
             "toollat, leave one source out, pooled; `mean [min, max]` over the seeds listed (a row of fewer "
             "seeds has no spread of its own: read it against today's).", ""]
    for mode in MODES:
        lines += [f"{mode.capitalize()}:", "", "| variant | seeds | " + " | ".join(n for _, n in ABLATION) + " |",
                  "|---|---|" + "---|" * len(ABLATION)]
        for variant, by_mode in results.items():
            reps = {s: r for s, r in by_mode[mode].items() if r is not None}
            if not reps:
                continue
            cells = []
            for key, _ in ABLATION:
                vals = [r["models"][MODEL][key] / (r["models"]["per_tool_median"][key] if key == "mae_log10" else 1.0)
                        for r in reps.values()]
                cells.append(spread(vals))
            lines.append(f"| {variant} | {', '.join(map(str, reps))} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def _f(v) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a fifth of the sessions, one seed, smaller models")
    ap.add_argument("--variants", nargs="*", default=list(DEFAULT_VARIANTS), choices=list(VARIANTS),
                    help=f"default: {' '.join(DEFAULT_VARIANTS)} (the other rows of the ablation ran with --seeds 0)")
    ap.add_argument("--seeds", nargs="*", type=int, default=None)
    ap.add_argument("--budget-min", type=float, default=14.0,
                    help="start no unit that would end after this many minutes (by the slowest unit so far)")
    ap.add_argument("--fresh", action="store_true", help="drop this mode's saved units first")
    args = ap.parse_args()
    started = time.perf_counter()
    cache = HERE / ".cache" / ("quick" if args.quick else "full")
    if args.fresh and (cache / "units").is_dir():
        import shutil

        shutil.rmtree(cache / "units")
    seeds = tuple(args.seeds) if args.seeds else ((0,) if args.quick else SEEDS)
    df = corpus_calls(HERE / ".cache")
    if args.quick:
        df = df[session_test_mask(df["session_id"], QUICK_FRACTION, 0)].reset_index(drop=True)
    sources = [s for s, _ in source_masks(df["source"])]
    masks = dict(source_masks(df["source"]))
    todo = [(v, s, src) for v in args.variants for s in seeds for src in sources
            if not unit_path(cache, v, s, src).is_file()]
    print(f"{len(df):,} calls, {len(sources)} sources; {len(todo)} units to run", flush=True)
    done_s = [float(np.load(p)["seconds"].sum()) for p in (cache / "units").rglob("*.npz")]
    for i, (v, seed, src) in enumerate(todo):
        # the next unit is expected to take as long as the slowest so far (folds differ in size)
        expect = max(done_s, default=0.0)
        if time.perf_counter() - started + expect > args.budget_min * 60:
            print(f"budget of {args.budget_min:g} min reached: {len(todo) - i} units left; rerun to resume", flush=True)
            break
        over = VARIANTS[v] + (QUICK_OVERRIDES if args.quick else [])
        sec = run_unit(df, masks[src], over, seed, unit_path(cache, v, seed, src))
        done_s.append(sum(sec.values()))
        print(f"[{i + 1}/{len(todo)}] {v} seed {seed} held out {src}: fit {sec['fit']:.0f} s, batch {sec['batch']:.0f} s, "
              f"prequential {sec['prequential']:.0f} s ({(time.perf_counter() - started) / 60:.1f} min)", flush=True)
    results = {v: {mode: {s: pooled(cache, v, s, sources, mode) for s in seeds} for mode in MODES} for v in args.variants}
    missing = sum(1 for v in args.variants for s in seeds for src in sources if not unit_path(cache, v, s, src).is_file())
    unit_seconds = [np.load(p)["seconds"].tolist() for p in sorted((cache / "units").rglob("*.npz"))]
    meta = {"calls": len(df), "sessions": int(df["session_id"].nunique()), "sources": len(sources), "seeds": seeds,
            "quick": args.quick, "unit_seconds": unit_seconds,
            "complete": "complete" if not missing else f"INCOMPLETE: {missing} units missing (rerun to resume)"}
    out_dir = cache if args.quick else HERE
    (out_dir / "results.json").write_text(dumps({"meta": meta, "variants": VARIANTS, "results": results}, indent=False))
    print(write_md(results, meta, out_dir / "results.md"))
    return 0 if not missing else 3


if __name__ == "__main__":
    sys.exit(main())
