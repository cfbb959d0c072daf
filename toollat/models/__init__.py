"""Latency models behind one protocol (``base.LatencyModel``): baselines, LightGBM quantile
heads, the nearest-neighbour embedding model, and their ensemble. ``build`` makes one from its
config (``conf/model/*.yaml``)."""
from __future__ import annotations

from typing import Any

from .base import LEVELS, LatencyModel, Prediction
from .baselines import BASELINES, GlobalMedian, PerCommandMean, PerToolMedian
from .ensemble import Ensemble
from .knn import NearestNeighbours
from .lgbm import LightGBMQuantile

MODELS: dict[str, Any] = {m.kind: m for m in (LightGBMQuantile, NearestNeighbours, Ensemble, *BASELINES)}

__all__ = ["LEVELS", "MODELS", "BASELINES", "LatencyModel", "Prediction", "build", "Ensemble", "GlobalMedian",
           "LightGBMQuantile", "NearestNeighbours", "PerCommandMean", "PerToolMedian"]


def build(spec: dict[str, Any], threads: int = 2, seed: int = 0) -> LatencyModel:
    """A model from its config: ``{"kind": "lgbm", "params": {...}, ...}``."""
    kind = spec.get("kind")
    if kind == "lgbm":
        return LightGBMQuantile(spec.get("params"), spec.get("classifier"), tuple(spec.get("levels", LEVELS)),
                                spec.get("calibration_folds", 3), spec.get("calibration_min", 200), threads, seed)
    if kind == "knn":
        return NearestNeighbours(spec.get("spread_scale", 1.0), spec.get("min_spread", 0.1))
    if kind == "ensemble":  # members and weights are mappings keyed by member name
        names = list(spec["members"])
        return Ensemble([build(spec["members"][n], threads, seed) for n in names], [spec["weights"][n] for n in names])
    if kind in MODELS:
        return MODELS[kind]()
    raise ValueError(f"unknown model kind {kind!r}; known: {sorted(MODELS)}")
