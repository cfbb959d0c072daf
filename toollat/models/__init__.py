"""Latency models behind one protocol (``base.LatencyModel``): baselines, LightGBM quantile
heads, the nearest-neighbour embedding model, and their ensemble.

``MODELS`` is the registry a bundle's card is read through (a card names a ``kind``, never
code); ``build`` makes a model from its config (``conf/model/*.yaml``) and the levels.
"""
from __future__ import annotations

from typing import Any

from toollat.core.settings import settings

from .base import LatencyModel, Prediction
from .baselines import BASELINES, GlobalMedian, PerCommandMean, PerToolMedian, build_baselines
from .ensemble import Ensemble
from .knn import KnnSpec, NearestNeighbours
from .lgbm import LightGBMQuantile, LightGBMSpec

MODELS: dict[str, Any] = {m.kind: m for m in (LightGBMQuantile, NearestNeighbours, Ensemble, *BASELINES)}

__all__ = ["MODELS", "BASELINES", "LatencyModel", "Prediction", "build", "build_baselines", "Ensemble",
           "GlobalMedian", "LightGBMQuantile", "NearestNeighbours", "PerCommandMean", "PerToolMedian"]


def build(spec: dict[str, Any], levels: tuple[float, ...], threads: int = 2, seed: int = 0) -> LatencyModel:
    """A model from its config: ``{"kind": "lgbm", "params": {...}, ...}``."""
    kind = spec.get("kind")
    if kind == "lgbm":
        s = settings(LightGBMSpec, spec, "model (lgbm)")
        return LightGBMQuantile(s.params, s.classifier, levels, s.calibration_folds, s.calibration_min, threads, seed,
                                s.exceed_s, s.exceed_params, s.combine)
    if kind == "knn":
        k = settings(KnnSpec, spec, "model (knn)")
        return NearestNeighbours(k.spread_scale, k.min_spread, levels)
    if kind == "ensemble":  # members and weights are mappings keyed by member name
        names = list(spec["members"])
        return Ensemble([build(spec["members"][n], levels, threads, seed) for n in names], [spec["weights"][n] for n in names])
    raise ValueError(f"unknown model kind {kind!r}; known: lgbm, knn, ensemble")
