"""A training run (``python train.py +exp=NAME``): resolve data -> split -> fit/score -> track
-> save, and the metrics table.

1. Resolve the data source (``toollat.data``) and read the canonical table.
2. Hold out sessions (grouped; ``split.test_fraction``); fit a ``ToolLatencyModel`` on the rest
   and score it beside the three baselines on the held-out sessions, overall and per family.
   The held-out calls are written to the run directory (``held_out_sessions.parquet``), so
   ``toollat simulate`` / ``evaluate`` can be rerun on exactly them.
3. With ``split.loso``, leave each source out in turn (``evaluation.leave_one_source_out``).
4. Export the bundle (refit on every call first with ``split.refit_full``), and log the whole run
   to MLflow: config, data summary, metrics of every model, plots, feature importance, the
   bundle, and the bundle as an MLflow pyfunc model registered under the experiment's name.

A run never replaces a bundle silently: it exports to ``models/<name>/`` when nothing is there,
otherwise (unless ``overwrite=true``) to its own run directory (``<run dir>/bundle``, as each job
of a Hydra multirun does), and says so when it starts and when it ends. Every step longer than a
few seconds shows progress (``toollat.progress``); tables are printed whole, never cut to the
terminal's width.
"""
from __future__ import annotations

import io
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from toollat import data as data_sources
from toollat.estimator import MODEL, ToolLatencyModel, in_scope
from toollat.evaluation import plots
from toollat.evaluation.evaluate import held_out as score_held_out, leave_one_source_out
from toollat.evaluation.metrics import METRICS
from toollat.features.embed import Embedder
from toollat.progress import step

console = Console(soft_wrap=True)  # long lines are the terminal's to wrap, not cut into the log


def esc(text) -> str:
    """A path or name as text, not rich markup (``data.paths=[...]``, ``x[1]/`` keep their brackets)."""
    return escape(str(text))


def data_summary(df: pd.DataFrame, scope: np.ndarray, source) -> dict[str, Any]:
    """What the data was, in counts (no paths: a bundle's card carries this)."""
    d = df[scope]
    return {
        "source": source.kind,
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
    # no vertical rules and no outer padding: four models beside the metric fit 80 columns (77)
    t = Table(title=f"{title} (n={rep['n']:,})", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, collapse_padding=True)
    t.add_column("metric", no_wrap=True, min_width=max(len(m) for m in METRICS))
    for name in rep["models"]:
        t.add_column(name, justify="right", no_wrap=True)
    for m in METRICS:
        t.add_row(m, *(_cell(rep["models"][n][m]) for n in rep["models"]))
    return t


def print_whole(table, out: Console | None = None) -> None:
    """Print a table at its natural width, wider than the terminal if need be: rich would
    otherwise cut the headers to fit (``per_tool_medi…``)."""
    out = out or console
    need = out.measure(table, options=out.options.update(max_width=10_000)).maximum
    width = out.width
    out.width = max(width, need)
    try:
        out.print(table)
    finally:
        out.width = width


def _cell(v) -> str:
    return "n/a" if v is None or v != v else f"{v:.3f}"


def feature_importance(model: ToolLatencyModel) -> dict[str, float] | None:
    """Total gain per feature of the p50 head (LightGBM models), largest first."""
    heads = getattr(model.model_, "heads", None)
    if not heads:
        return None
    head = heads[list(model.model_.levels).index(0.5)]
    gain = head.feature_importance(importance_type="gain")
    pairs = sorted(zip(model.feature_names_, gain.tolist()), key=lambda p: -p[1])
    return {n: float(g) for n, g in pairs}


def run(cfg: dict[str, Any], run_dir: Path | None = None) -> dict[str, Any]:
    """The whole run; returns a summary (metrics, bundle path, MLflow run id)."""
    from toollat.tracking import Tracker

    started = time.perf_counter()
    progress = bool(cfg.get("progress", True))
    embedder = Embedder(Path(cfg["paths"]["cache"]), threads=cfg.get("threads", 2))

    def make_model() -> ToolLatencyModel:
        return ToolLatencyModel.from_config(cfg, embedder)

    make_model()._checked()  # bad hyper-parameters fail before any data is read
    target, kept = _bundle_dir(cfg, run_dir) if cfg.get("export", True) else (None, None)
    if kept:
        console.print(f"[yellow]note:[/yellow] {esc(kept)} exists and is kept: this run's bundle goes to {esc(target)} "
                      "(overwrite=true replaces it)")
    ml = cfg["mlflow"]
    with step("opening the MLflow store", progress and ml["enabled"]):
        tracker = Tracker(ml["enabled"], ml["tracking_uri"], ml["artifact_root"], ml["experiment"],
                          run_name=f"{cfg['name']}-{cfg['model']['kind']}")
    with tracker, ExitStack() as stack:
        source = data_sources.resolve(cfg["data"]["kind"], cfg["data"].get("paths"))
        console.print(f"[bold]data:[/bold] {esc(source.reason)}")
        df, ingest_report = data_sources.load(source, redact=cfg["data"].get("redact", True), progress=progress,
                                              harvest_budget_s=cfg["data"].get("harvest_budget_s", 120.0))
        if ingest_report is not None:
            d = ingest_report.to_dict()
            console.print(f"read {d['calls']:,} calls from {d['files']} files ({d['duplicates_dropped']:,} copies dropped, "
                          f"{sum(d['lines_skipped'].values()):,} lines skipped)")
        if len(df) == 0:
            raise data_sources.NoDataError(f"no tool calls in {source.paths}")
        scope = in_scope(df, cfg.get("tools"))
        summary = data_summary(df, scope, source)
        console.print(f"{summary['calls_in_scope']:,} calls in scope ({cfg['name']}) of {summary['calls']:,}, "
                      f"{summary['sessions']:,} sessions, sources: {', '.join(summary['sources'])}")
        tracker.params({k: cfg[k] for k in ("name", "tools", "levels", "features", "model", "target", "split", "data", "seed")})
        tracker.tags({"data.source": source.kind, "data.reason": source.reason, "model.kind": cfg["model"]["kind"]})
        tracker.dict(cfg, "config.json")
        tracker.dict(summary, "data_summary.json")

        split = cfg["split"]
        cluster = cfg.get("cluster") or {"kind": "none"}
        executor = None  # this process; on a Dask cluster the same fits run on its workers (toollat/distributed.py)
        if cluster["kind"] == "dask":
            from toollat.distributed import cluster_executor

            console.print(f"[bold]cluster:[/bold] dask at {esc(str(cluster['address']))}")
            executor = stack.enter_context(cluster_executor(cluster))
        what = f"fitting features and {cfg['model']['kind']} model, then scoring held-out sessions"  # fits 80 columns
        with step(what, progress):
            fitted, held, (calls, y_ms, preds) = score_held_out(df, make_model, split["test_fraction"], cfg.get("seed", 0),
                                                                progress, executor=executor)
        timings = dict(fitted.timings_)
        console.print(f"fitted on {fitted.n_train_calls_:,} training calls in "
                      f"{timings['seconds_features'] + timings['seconds_fit']:.0f} s (features {timings['seconds_features']:.0f} s, "
                      f"model {timings['seconds_fit']:.0f} s); scored {held['n']:,} held-out calls")
        print_whole(metrics_table("held-out sessions", held))
        if run_dir is not None:
            test_sessions = set(calls["session_id"])
            held_path = Path(run_dir) / "held_out_sessions.parquet"
            df[df["session_id"].isin(test_sessions)].reset_index(drop=True).to_parquet(held_path)
            console.print(f"held-out sessions: {esc(held_path)}")

        loso = None
        if split.get("loso"):
            folds = df["source"].nunique()
            done = 0
            with step(f"leave one source out: {folds} folds", progress) as bar:
                def said(src: str, m: dict[str, Any]) -> None:
                    nonlocal done
                    done += 1
                    console.print(f"  held out {esc(src)} ({done} of {folds}): toollat mae {m[MODEL]['mae_log10']:.3f} "
                                  f"vs per_tool_median {m['per_tool_median']['mae_log10']:.3f} (n={m[MODEL]['n']:,})")
                    bar.update(0, description=f"leave one source out: {done} of {folds} folds done")
                loso = leave_one_source_out(df, make_model, said, executor=executor)
            if loso:
                print_whole(metrics_table("leave one source out (pooled)", loso))

        export = fitted
        if split.get("refit_full"):
            with step(f"refitting on every call ({len(df):,}) for export", progress):
                export = make_model().fit(df, executor=executor, progress=progress)
        timings["seconds_total"] = time.perf_counter() - started

        with step("saving the bundle, logging the run to MLflow" if tracker.enabled else "saving the bundle", progress):
            _log_metrics(tracker, held, loso, timings, fitted, (calls, y_ms, preds))
            bundle_dir = registered = None
            if target is not None:
                info = {"data": summary, "timings": timings, "mlflow_run_id": tracker.run_id,
                        "metrics": {"held_out_sessions": held, **({"leave_one_source_out": loso} if loso else {})},
                        **_studies(cfg)}
                bundle_dir = export.save(target, info)
                tracker.artifacts(bundle_dir, "bundle")
                registered = tracker.pyfunc(bundle_dir, cfg["name"])
        if bundle_dir is not None:
            console.print(f"[bold]bundle:[/bold] {esc(bundle_dir)}" + (f" ({esc(kept)} kept: overwrite=true replaces it)" if kept else ""))
    if tracker.run_id:
        reg = f"; model registered as '{cfg['name']}' version {registered}" if registered else ""
        console.print(f"[bold]mlflow:[/bold] run {tracker.run_id} in experiment '{ml['experiment']}' ({esc(ml['tracking_uri'])}){reg}")
    console.print(f"done in {time.perf_counter() - started:.0f} s")
    return {"held_out": held, "loso": loso, "bundle": str(bundle_dir) if bundle_dir else None,
            "run_id": tracker.run_id, "timings": timings, "data": summary}


def _studies(cfg: dict[str, Any]) -> dict[str, Any]:
    """The summaries of the studies the card carries (``card.studies``), by their path in the
    checkout; a study not run yet is named as missing, not invented."""
    import json

    out = {}
    for rel in (cfg.get("card") or {}).get("studies") or []:
        path = Path(cfg["paths"]["root"]) / rel
        if path.is_file():
            out[rel] = json.loads(path.read_text()).get("summary", {})
        else:
            console.print(f"[yellow]note:[/yellow] study {esc(rel)} has no results yet: the card will say so")
            out[rel] = None
    return {"studies": out} if out else {}


def _bundle_dir(cfg: dict[str, Any], run_dir: Path | None) -> tuple[Path, Path | None]:
    """Where the bundle goes, and the existing ``models/<name>/`` kept instead of replaced (or None).

    ``models/<name>/`` when nothing is there or with ``overwrite=true``; otherwise the run
    directory's ``bundle/``, as each job of a Hydra multirun always does. Without a run directory
    an existing one is an error before any work is done."""
    if cfg.get("multirun") and run_dir is not None:
        return Path(run_dir) / "bundle", None
    named = Path(cfg["paths"]["models"]) / cfg["name"]
    if cfg.get("overwrite") or not (named.exists() or named.is_symlink()):
        return named, None
    if run_dir is None:
        raise ValueError(f"{named} exists: overwrite=true replaces it, or give the run a directory for its bundle")
    return Path(run_dir) / "bundle", named


def _log_metrics(tracker, held, loso, timings, fitted, scored) -> None:
    """Metrics of every model (overall, per family, leave one source out), timings, the reports,
    feature importance, plots and the table: what MLflow keeps of a run besides the bundle."""
    for name, m in held["models"].items():
        tracker.metrics(m, prefix=f"{name}.")
    for name, fams in held["per_family"].items():
        for fam, m in fams.items():
            tracker.metrics({k: m[k] for k in ("mae_log10", "within_2x", "spearman", "coverage_p90")}, prefix=f"family.{fam}.{name}.")
    if loso:
        for name, m in loso["models"].items():
            tracker.metrics(m, prefix=f"loso.{name}.")
    tracker.metrics(timings)
    tracker.dict(held, "metrics/held_out_sessions.json")
    if loso:
        tracker.dict(loso, "metrics/leave_one_source_out.json")
    importance = feature_importance(fitted)
    if importance:
        tracker.dict(importance, "feature_importance.json")
    calls, y_ms, preds = scored
    _log_plots(tracker, y_ms, preds, calls, held)
    tracker.text(_table_text(held, loso), "metrics/table.txt")


def _log_plots(tracker, y_ms, preds, calls, held) -> None:
    import matplotlib.pyplot as plt

    model_pred = preds[MODEL][0]
    figs = {
        "plots/predicted_vs_actual.png": plots.predicted_vs_actual(y_ms, model_pred),
        "plots/quantile_calibration.png": plots.calibration(y_ms, model_pred, calls["tool_family"].to_numpy()),
        "plots/per_family_error.png": plots.family_error({n: held["per_family"][n] for n in (MODEL, "per_tool_median")}),
        "plots/long_call_pr.png": plots.long_pr(y_ms, {n: preds[n] for n in (MODEL, "per_tool_median")}),
        "plots/p_long_reliability.png": plots.reliability(y_ms, {n: preds[n] for n in (MODEL, "per_tool_median")}),
    }
    for path, fig in figs.items():
        tracker.figure(fig, path)
        plt.close(fig)


def _table_text(held_out: dict[str, Any], loso: dict[str, Any] | None) -> str:
    c = Console(record=True, width=140, file=io.StringIO())
    print_whole(metrics_table("held-out sessions", held_out), c)
    if loso:
        print_whole(metrics_table("leave one source out (pooled)", loso), c)
    return c.export_text()
