"""The report of several models scored on the same calls: metrics overall and per tool family
(``report``), and predictions of several folds pooled into one (``pool_predictions``)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from toollat.hints import HintCosts, decision_costs, oracle_costs
from toollat.models import Prediction

from .metrics import compute

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
