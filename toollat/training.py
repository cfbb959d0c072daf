"""A training run (``python train.py +exp=NAME``): data -> features -> models -> evaluation ->
MLflow -> bundle, and the metrics table.

1. Resolve the data source (``toollat.data``) and read the canonical table.
2. Hold out sessions (grouped; ``split.test_fraction``). Features are built from *all* calls of
   a session (the context needs them); models learn and are scored on the experiment's tools.
3. Fit the feature pipeline, the model and the three baselines on the training sessions; score
   them side by side on the held-out sessions, overall and per tool family.
4. With ``split.loso``, repeat with each source held out in turn; metrics are pooled.
5. Log config, data summary, metrics, plots and the bundle to MLflow; export the bundle
   (refit on every call first with ``split.refit_full``).
"""
from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from toollat import data as data_sources
from toollat.bundle import save_bundle
from toollat.evaluation import plots
from toollat.evaluation.evaluate import MODEL, in_scope, predict_all, report, target_ms
from toollat.evaluation.metrics import METRICS, to_log10_s
from toollat.evaluation.splits import leave_one_source_out, session_test_mask
from toollat.features.embed import Embedder
from toollat.features.pipeline import FeatureConfig, FeaturePipeline
from toollat.models import BASELINES, LatencyModel, Prediction, build

console = Console()


@dataclass
class Fitted:
    """What a bundle holds: the feature pipeline, the model, the baselines, and the training
    distribution of human gaps (the hint for the wait after an agent's turn)."""

    pipeline: FeaturePipeline
    model: LatencyModel
    baselines: dict[str, LatencyModel]
    human_gaps: dict[str, Any] | None = None


def human_gap_distribution(df: pd.DataFrame, levels=(0.1, 0.5, 0.9, 0.99), min_n: int = 20) -> dict[str, Any] | None:
    """Quantiles (ms) of the waits before human turns (``simulation.gaps`` definition), overall
    and per agent with at least ``min_n`` of them; None if the data has fewer than ``min_n``."""
    from toollat.simulation import build_gaps

    frame = build_gaps(df).frame
    human = frame[frame["kind"] == "human"]
    if len(human) < min_n:
        return None
    agents = df.drop_duplicates("session_id").set_index("session_id")["agent"]
    agent = human["session_id"].map(agents) if "session_id" in human else pd.Series(index=human.index, dtype=object)
    out = {"levels": list(levels), "n": int(len(human)),
           "ms": {"*": [float(v) * 1000.0 for v in np.quantile(human["gap_s"], levels)]}}
    for a, g in human.groupby(agent):
        if len(g) >= min_n:
            out["ms"][str(a)] = [float(v) * 1000.0 for v in np.quantile(g["gap_s"], levels)]
    return out


def fit(df: pd.DataFrame, cfg: dict[str, Any], embedder: Embedder, progress: bool = False) -> tuple[Fitted, dict[str, float]]:
    """Fit pipeline, model and baselines on ``df`` (features from all calls; models on the scope)."""
    timings = {}
    t = time.perf_counter()
    pipeline = FeaturePipeline(FeatureConfig.from_dict(cfg["features"]), embedder)
    X = pipeline.fit_transform(df, to_log10_s(df["wall_ms"].to_numpy()), progress=progress)
    timings["seconds_features"] = time.perf_counter() - t
    y = target_ms(df, cfg["target"]["name"])
    rows = in_scope(df, cfg.get("tools")) & ~np.isnan(y)
    if rows.sum() < 50:
        raise ValueError(f"only {int(rows.sum())} training calls in scope {cfg.get('tools')}: too few to train on")
    calls, Xs, ys = df[rows].reset_index(drop=True), X[rows], to_log10_s(y[rows])
    t = time.perf_counter()
    model = build(cfg["model"], threads=cfg.get("threads", 2), seed=cfg.get("seed", 0)).fit(calls, Xs, ys, pipeline.names)
    baselines = {b.kind: b().fit(calls, None, ys, pipeline.names) for b in BASELINES}
    timings["seconds_fit"] = time.perf_counter() - t
    return Fitted(pipeline, model, baselines, human_gap_distribution(df)), timings


def score(fitted: Fitted, df: pd.DataFrame, cfg: dict[str, Any], progress: bool = False):
    """Predictions of the model and baselines for the in-scope calls of ``df`` (all unseen)."""
    X = fitted.pipeline.transform(df, progress=progress)
    y = target_ms(df, cfg["target"]["name"])
    rows = in_scope(df, cfg.get("tools")) & ~np.isnan(y)
    calls = df[rows].reset_index(drop=True)
    return calls, y[rows], predict_all(fitted, calls, X[rows])


def _concat_predictions(parts: list[dict[str, tuple[Prediction, float]]]) -> dict[str, tuple[Prediction, float]]:
    """Pool predictions of several folds; each fold keeps its own long threshold, so pooled
    long-call decisions are made per fold and carried as p_long relative to the threshold."""
    out = {}
    for name in parts[0]:
        preds = [p[name] for p in parts]
        levels = preds[0][0].levels
        # shift p_long so that every fold's threshold maps to 0.5 (monotone within each fold)
        p_long = np.concatenate([np.where(pl.p_long >= thr, 0.5 + 0.5 * (pl.p_long - thr) / max(1 - thr, 1e-9),
                                          0.5 * pl.p_long / max(thr, 1e-9)) for pl, thr in preds])
        q = np.concatenate([pl.quantiles for pl, _ in preds])
        out[name] = (Prediction(levels, q, p_long), 0.5)
    return out


def data_summary(df: pd.DataFrame, scope: np.ndarray, source) -> dict[str, Any]:
    d = df[scope]
    return {
        "source": source.kind,
        "reason": source.reason,
        "calls": int(len(df)),
        "calls_in_scope": int(len(d)),
        "sessions": int(df["session_id"].nunique()),
        "sources": {str(k): int(v) for k, v in d["source"].value_counts().items()},
        "agents": {str(k): int(v) for k, v in d["agent"].value_counts().items()},
        "families": {str(k): int(v) for k, v in d["tool_family"].value_counts().items()},
        "first_call": str(df["emitted_at"].min()) if len(df) else None,
        "last_call": str(df["emitted_at"].max()) if len(df) else None,
    }


def metrics_table(title: str, rep: dict[str, Any]) -> Table:
    t = Table(title=f"{title} (n={rep['n']:,})", show_edge=False)
    t.add_column("metric")
    for name in rep["models"]:
        t.add_column(name, justify="right")
    for m in METRICS:
        t.add_row(m, *(f"{rep['models'][n][m]:.3f}" for n in rep["models"]))
    return t


def run(cfg: dict[str, Any]) -> dict[str, Any]:
    """The whole run; returns a summary (metrics, bundle path, MLflow run id)."""
    from toollat.tracking import Tracker

    started = time.perf_counter()
    progress = bool(cfg.get("progress", True))
    source = data_sources.resolve(cfg["data"]["kind"], cfg["data"].get("paths"))
    console.print(f"[bold]data:[/bold] {source.reason}")
    df, ingest_report = data_sources.load(source, redact=cfg["data"].get("redact", True), progress=progress,
                                          harvest_budget_s=cfg["data"].get("harvest_budget_s", 120.0))
    if ingest_report is not None:
        d = ingest_report.to_dict()
        console.print(f"read {d['calls']:,} calls from {d['files']} files ({d['duplicates_dropped']:,} copies dropped, "
                      f"{sum(d['lines_skipped'].values()):,} lines skipped)")
    if len(df) == 0:
        raise data_sources.NoDataError(f"no tool calls in {source.paths}")
    embedder = Embedder(Path(cfg["paths"]["cache"]), threads=cfg.get("threads", 2))
    scope = in_scope(df, cfg.get("tools"))
    summary = data_summary(df, scope, source)
    console.print(f"{summary['calls_in_scope']:,} calls in scope ({cfg['name']}) of {summary['calls']:,}, "
                  f"{summary['sessions']:,} sessions, sources: {', '.join(summary['sources'])}")

    split = cfg["split"]
    test = session_test_mask(df["session_id"], split["test_fraction"], cfg.get("seed", 0))
    train_df, test_df = df[~test].reset_index(drop=True), df[test].reset_index(drop=True)
    fitted, timings = fit(train_df, cfg, embedder, progress)
    calls, y_ms, preds = score(fitted, test_df, cfg, progress)
    held_out = report(calls, y_ms, preds)
    console.print(metrics_table("held-out sessions", held_out))

    loso = None
    if split.get("loso"):
        parts, ys, per_source = [], [], {}
        for src, mask in leave_one_source_out(df["source"]):
            if mask.all() or not (scope & mask).any():
                continue
            f_src, _ = fit(df[~mask].reset_index(drop=True), cfg, embedder, False)
            c_src, y_src, p_src = score(f_src, df[mask].reset_index(drop=True), cfg)
            parts.append(p_src)
            ys.append((c_src, y_src))
            per_source[src] = report(c_src, y_src, p_src)["models"]
            console.print(f"  held out {src}: {len(c_src):,} calls, toollat mae {per_source[src][MODEL]['mae_log10']:.3f} "
                          f"vs per_tool_median {per_source[src]['per_tool_median']['mae_log10']:.3f}")
        if parts:
            loso = report(pd.concat([c for c, _ in ys], ignore_index=True), np.concatenate([y for _, y in ys]),
                          _concat_predictions(parts))
            loso["per_source"] = per_source
            console.print(metrics_table("leave one source out (pooled)", loso))

    export_fit = fitted
    if split.get("refit_full"):
        console.print("refitting on every call for export")
        export_fit, _ = fit(df, cfg, embedder, progress)
    timings["seconds_total"] = time.perf_counter() - started

    card = {
        "name": cfg["name"],
        "target": cfg["target"]["name"],
        "tools": cfg.get("tools"),
        "hints": dict(cfg["hints"]),
        "data": summary,
        "metrics": {"held_out_sessions": held_out, **({"leave_one_source_out": loso} if loso else {})},
        "config": cfg,
        "timings": timings,
        "feature_names": fitted.pipeline.names,
        "human_gaps": export_fit.human_gaps,
    }
    bundle_dir = None
    with Tracker(cfg["mlflow"]["enabled"], cfg["mlflow"]["tracking_uri"], cfg["mlflow"]["artifact_root"],
                 cfg["mlflow"]["experiment"], run_name=f"{cfg['name']}-{cfg['model']['kind']}") as tracker:
        card["mlflow_run_id"] = tracker.run_id
        tracker.params({k: cfg[k] for k in ("name", "tools", "features", "model", "target", "split", "data", "seed")})
        tracker.tags({"data.source": source.kind, "model.kind": cfg["model"]["kind"]})
        tracker.dict(cfg, "config.json")
        tracker.dict(summary, "data_summary.json")
        for name, m in held_out["models"].items():
            tracker.metrics(m, prefix=f"{name}.")
        for name, fams in held_out["per_family"].items():
            for fam, m in fams.items():
                tracker.metrics({k: m[k] for k in ("mae_log10", "within_2x", "spearman", "coverage_p90")}, prefix=f"family.{fam}.{name}.")
        if loso:
            for name, m in loso["models"].items():
                tracker.metrics(m, prefix=f"loso.{name}.")
        tracker.metrics(timings)
        tracker.dict(held_out, "metrics/held_out_sessions.json")
        if loso:
            tracker.dict(loso, "metrics/leave_one_source_out.json")
        model_pred = preds[MODEL][0]
        figs = {
            "plots/predicted_vs_actual.png": plots.predicted_vs_actual(y_ms, model_pred),
            "plots/quantile_calibration.png": plots.calibration(y_ms, model_pred, calls["tool_family"].to_numpy()),
            "plots/per_family_error.png": plots.family_error({n: held_out["per_family"][n] for n in (MODEL, "per_tool_median")}),
            "plots/long_call_pr.png": plots.long_pr(y_ms, {n: preds[n] for n in (MODEL, "per_tool_median")}),
        }
        for path, fig in figs.items():
            tracker.figure(fig, path)
        import matplotlib.pyplot as plt

        for fig in figs.values():
            plt.close(fig)
        tracker.text(_table_text(held_out, loso), "metrics/table.txt")
        if cfg.get("export", True):
            bundle_dir = save_bundle(Path(cfg["paths"]["models"]) / cfg["name"], export_fit.pipeline, export_fit.model,
                                     export_fit.baselines, card)
            tracker.artifacts(bundle_dir, "bundle")
            console.print(f"[bold]bundle:[/bold] {bundle_dir}")
    if tracker.run_id:
        console.print(f"[bold]mlflow:[/bold] run {tracker.run_id} in experiment '{cfg['mlflow']['experiment']}' "
                      f"({cfg['mlflow']['tracking_uri']})")
    console.print(f"done in {timings['seconds_total']:.0f} s (features {timings['seconds_features']:.0f} s, "
                  f"fit {timings['seconds_fit']:.0f} s)")
    return {"held_out": held_out, "loso": loso, "bundle": str(bundle_dir) if bundle_dir else None,
            "run_id": tracker.run_id, "timings": timings, "data": summary}


def _table_text(held_out: dict[str, Any], loso: dict[str, Any] | None) -> str:
    c = Console(record=True, width=120, file=io.StringIO())
    c.print(metrics_table("held-out sessions", held_out))
    if loso:
        c.print(metrics_table("leave one source out (pooled)", loso))
    return c.export_text()
