"""Score a model beside the baselines on the same calls: one dict, used by training, the
``toollat evaluate`` command and the experiments alike.

``report(...)`` returns ``{"n": int, "models": {name: metrics}, "per_family": {name: {family:
metrics}}, "decision": {...}}``; model names are ``toollat``, ``per_tool_median``,
``per_command_mean`` and ``global_median``. ``decision`` states what ``decision_cost`` is
measured in, the hint costs, the fair per-tool policy (``per_tool_median``'s quantiles through
the same hint rule) and the oracle's cost on the same calls. ``evaluate`` treats every call of
the data as unseen (each session replayed from an empty history); ``held_out`` and
``leave_one_source_out`` fit a fresh model per split, so training and the experiments evaluate
the same way.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from toollat.estimator import BASELINE_ORDER, MODEL, ToolLatencyModel, in_scope  # noqa: F401
from toollat.hints import HintCosts
from toollat.models import Prediction

from .metrics import compute, decision_costs, oracle_costs
from .splits import session_test_mask, source_masks

FAMILY_MIN = 20  # per-family metrics for families with at least this many calls
FAIR = "per_tool_median"  # its quantiles through the hint rule: the fair per-tool policy


def report(calls: pd.DataFrame, y_ms: np.ndarray, predictions: dict[str, tuple[Prediction, Any]],
           family_min: int = FAMILY_MIN, costs: HintCosts | None = None) -> dict[str, Any]:
    """Metrics per model, overall and per tool family, on the same calls. A prediction's
    threshold is a number, or one per call (``pool_predictions``). ``costs``: the hint costs
    the decision metrics use (the model's own; default ``HintCosts()``)."""
    costs = costs or HintCosts()
    y_ms = np.asarray(y_ms, dtype=np.float64)
    families = calls["tool_family"].to_numpy()
    fair = predictions.get(FAIR)
    fair_cost = None if fair is None else decision_costs(fair[0].levels, fair[0].ms(), y_ms, costs)

    def scores(pred: Prediction, threshold, m) -> dict[str, float]:
        thr = threshold[m] if np.ndim(threshold) else threshold
        fc = None if fair_cost is None or not m.any() else float(fair_cost[m].mean())
        return compute(y_ms[m], pred.levels, pred.quantiles[m], pred.p_long[m], thr, costs, fc)

    everything = np.ones(len(y_ms), dtype=bool)
    out: dict[str, Any] = {"n": int(len(calls)), "models": {}, "per_family": {}}
    for name, (pred, threshold) in predictions.items():
        out["models"][name] = scores(pred, threshold, everything)
        fam = {}
        for f in sorted(set(families.tolist())):
            m = families == f
            if m.sum() >= family_min:
                fam[f] = scores(pred, threshold, m)
        out["per_family"][name] = fam
    out["decision"] = {
        "unit": "GPU-hold seconds per call (a KV of unit size), the hint decided from each model's quantiles",
        "costs": {k: getattr(costs, k) for k in ("breakeven_s", "offload_cost_s", "offload_hold_ratio", "min_ttl_ms")},
        "fair_policy": FAIR if fair is not None else None,
        "oracle_cost": float(oracle_costs(y_ms, costs).mean()) if len(y_ms) else float("nan"),
    }
    return out


def evaluate(model: ToolLatencyModel, df: pd.DataFrame, progress: bool = False) -> dict[str, Any]:
    """Score a fitted model and its baselines on ``df`` (all calls unseen; within the model's scope)."""
    out = report(*model.scored(df, progress=progress), costs=model.hint_costs)
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
    return model, report(*scored, costs=model.hint_costs), scored


def leave_one_source_out(df: pd.DataFrame, make_model: Callable[[], ToolLatencyModel],
                         on_source: Callable[[str, dict[str, Any]], None] | None = None,
                         online: bool = False) -> dict[str, Any] | None:
    """Hold out each source in turn (a model fit on the others), pool the predictions; None if
    the data has fewer than two sources. ``per_source`` holds each source's own report. With
    ``online`` each held-out source is replayed prequentially (``evaluation.online``)."""
    score = _scorer(online)
    parts, frames, per_source = [], [], {}
    costs = make_model().hint_costs
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
        per_source[src] = report(calls, y, preds, costs=costs)["models"]
        if on_source is not None:
            on_source(src, per_source[src])
    if not parts:
        return None
    rep = report(pd.concat([c for c, _ in frames], ignore_index=True), np.concatenate([y for _, y in frames]),
                 pool_predictions(parts), costs=costs)
    rep["per_source"] = per_source
    return rep


def pool_predictions(parts: list[dict[str, tuple[Prediction, Any]]]) -> dict[str, tuple[Prediction, np.ndarray]]:
    """Pool predictions of several folds: the folds' own ``p_long`` (probabilities, so PR-AUC
    ranks and calibration reads them as a deployed model gives them), and each fold's long
    threshold carried per call, so pooled long-call decisions are made per fold."""
    out = {}
    for name in parts[0]:
        preds = [p[name] for p in parts]
        levels = preds[0][0].levels
        p_long = np.concatenate([pl.p_long for pl, _ in preds])
        thr = np.concatenate([np.broadcast_to(np.asarray(t, dtype=np.float64), len(pl)) for pl, t in preds])
        q = np.concatenate([pl.quantiles for pl, _ in preds])
        out[name] = (Prediction(levels, q, p_long), thr)
    return out
