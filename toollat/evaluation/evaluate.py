"""Score a model beside the baselines on the same calls: one dict, used by training, the
``toollat evaluate`` command and the experiments alike.

``report(...)`` returns ``{"n": int, "models": {name: metrics}, "per_family": {name: {family:
metrics}}}``; model names are ``toollat``, ``per_tool_median``, ``per_command_mean`` and
``global_median``. ``evaluate`` treats every call of the data as unseen (each session replayed
from an empty history); ``held_out`` and ``leave_one_source_out`` fit a fresh model per split,
so training and the experiments evaluate the same way.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from toollat.estimator import BASELINE_ORDER, MODEL, ToolLatencyModel, in_scope  # noqa: F401
from toollat.models import Prediction

from .metrics import compute
from .splits import session_test_mask, source_masks

FAMILY_MIN = 20  # per-family metrics for families with at least this many calls


def report(calls: pd.DataFrame, y_ms: np.ndarray, predictions: dict[str, tuple[Prediction, float]],
           family_min: int = FAMILY_MIN) -> dict[str, Any]:
    """Metrics per model, overall and per tool family, on the same calls."""
    families = calls["tool_family"].to_numpy()
    out: dict[str, Any] = {"n": int(len(calls)), "models": {}, "per_family": {}}
    for name, (pred, threshold) in predictions.items():
        out["models"][name] = compute(y_ms, pred.p50, pred.p90, pred.p_long, threshold)
        fam = {}
        for f in sorted(set(families.tolist())):
            m = families == f
            if m.sum() >= family_min:
                fam[f] = compute(y_ms[m], pred.p50[m], pred.p90[m], pred.p_long[m], threshold)
        out["per_family"][name] = fam
    return out


def evaluate(model: ToolLatencyModel, df: pd.DataFrame, progress: bool = False) -> dict[str, Any]:
    """Score a fitted model and its baselines on ``df`` (all calls unseen; within the model's scope)."""
    out = report(*model.scored(df, progress=progress))
    out["scope"] = model.tools or {"families": None, "names": None}
    return out


def _scorer(online: bool):
    if online:
        from .online import prequential_scored

        return prequential_scored
    return lambda model, df, progress=False: model.scored(df, progress=progress)


def held_out(df: pd.DataFrame, make_model: Callable[[], ToolLatencyModel], test_fraction: float, seed: int,
             progress: bool = False, online: bool = False) -> tuple[ToolLatencyModel, dict[str, Any], tuple]:
    """Fit on the sessions not held out, score on the held-out ones (grouped by session;
    prequentially with ``online``). Returns the fitted model, the report, and
    ``(calls, y_ms, predictions)`` for plots."""
    test = session_test_mask(df["session_id"], test_fraction, seed)
    model = make_model().fit(df[~test].reset_index(drop=True), progress=progress)
    scored = _scorer(online)(model, df[test].reset_index(drop=True), progress=progress)
    return model, report(*scored), scored


def leave_one_source_out(df: pd.DataFrame, make_model: Callable[[], ToolLatencyModel],
                         on_source: Callable[[str, dict[str, Any]], None] | None = None,
                         online: bool = False) -> dict[str, Any] | None:
    """Hold out each source in turn (a model fit on the others), pool the predictions; None if
    the data has fewer than two sources. ``per_source`` holds each source's own report. With
    ``online`` each held-out source is replayed prequentially (``evaluation.online``)."""
    score = _scorer(online)
    parts, frames, per_source = [], [], {}
    for src, mask in source_masks(df["source"]):
        if mask.all():
            continue
        model = make_model()
        if not in_scope(df[mask], model.tools).any():
            continue
        model.fit(df[~mask].reset_index(drop=True))
        calls, y, preds = score(model, df[mask].reset_index(drop=True))
        if len(calls) == 0:
            continue
        parts.append(preds)
        frames.append((calls, y))
        per_source[src] = report(calls, y, preds)["models"]
        if on_source is not None:
            on_source(src, per_source[src])
    if not parts:
        return None
    rep = report(pd.concat([c for c, _ in frames], ignore_index=True), np.concatenate([y for _, y in frames]),
                 pool_predictions(parts))
    rep["per_source"] = per_source
    return rep


def pool_predictions(parts: list[dict[str, tuple[Prediction, float]]]) -> dict[str, tuple[Prediction, float]]:
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
