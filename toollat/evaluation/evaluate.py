"""Score a model beside the baselines on the same calls: one dict, used by training, the
``toollat evaluate`` command and the experiments alike.

``report(...)`` returns ``{"n": int, "models": {name: metrics}, "per_family": {name: {family:
metrics}}}``; model names are ``toollat``, ``per_tool_median``, ``per_command_mean`` and
``global_median`` (DESIGN.md). ``evaluate_bundle`` treats every call of the data as unseen: each
session is replayed from an empty history.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from toollat.models import Prediction

from .metrics import compute

MODEL = "toollat"
BASELINE_ORDER = ("per_tool_median", "per_command_mean", "global_median")
FAMILY_MIN = 20  # per-family metrics for families with at least this many calls


def in_scope(df: pd.DataFrame, tools: dict[str, Any] | None) -> np.ndarray:
    """Calls a model learns and is scored on: ``{"families": [...], "names": [...]}`` (null: all)."""
    mask = np.ones(len(df), dtype=bool)
    if tools:
        fams, names = tools.get("families"), tools.get("names")
        if fams:
            mask &= df["tool_family"].isin(list(fams)).to_numpy()
        if names:
            mask &= df["tool_name"].isin(list(names)).to_numpy()
    return mask


def target_ms(df: pd.DataFrame, target: str) -> np.ndarray:
    """Latency to predict: ``wall`` (default), ``internal`` (runner-reported) or ``effective``."""
    wall = df["wall_ms"].to_numpy(dtype=np.float64)
    internal = df["internal_ms"].to_numpy(dtype=np.float64)
    if target == "wall":
        return wall
    if target == "internal":
        return internal
    if target == "effective":
        return np.where(np.isnan(internal), wall, internal)
    raise ValueError(f"unknown target {target!r}: wall, internal or effective")


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


def predict_all(bundle_like, calls: pd.DataFrame, X: np.ndarray) -> dict[str, tuple[Prediction, float]]:
    """The model's and every baseline's predictions for the same calls."""
    preds = {MODEL: (bundle_like.model.predict(calls, X), bundle_like.model.long_threshold)}
    for name in BASELINE_ORDER:
        if name in bundle_like.baselines:
            b = bundle_like.baselines[name]
            preds[name] = (b.predict(calls, None), b.long_threshold)
    return preds


def evaluate_bundle(bundle, df: pd.DataFrame, progress: bool = False) -> dict[str, Any]:
    """Score a bundle and its baselines on ``df`` (all calls unseen; scored within the bundle's scope)."""
    X = bundle.pipeline.transform(df, progress=progress)
    scope = in_scope(df, bundle.card.get("tools"))
    y = target_ms(df, bundle.card.get("target", "wall"))
    keep = scope & ~np.isnan(y)
    calls = df[keep].reset_index(drop=True)
    out = report(calls, y[keep], predict_all(bundle, calls, X[keep]))
    out["scope"] = bundle.card.get("tools") or {"families": None, "names": None}
    return out
