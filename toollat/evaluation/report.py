"""The report of several models scored on the same calls: metrics overall and per tool family
(``report``), and predictions of several folds pooled into one (``pool_predictions``)."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from toollat.models import Prediction

from .metrics import compute

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
