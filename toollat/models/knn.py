"""The embedding model: predicts from the nearest training calls alone (no trees, no context).

It reads the memory columns of the feature matrix (``features.memory``): the similarity-
weighted mean and spread of the log latency of the k most similar training texts, or the
exact text's own mean when it was seen. Quantiles assume a normal spread around that mean in
log space, widened by ``spread_scale``; ``p_long`` is the neighbours' share of long calls.
It is what "semantics alone" predicts, and a member of the ensemble.
"""
from __future__ import annotations

from pathlib import Path
from statistics import NormalDist
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from toollat.features.memory import MEMORY_FEATURES

from .base import LEVELS, LONG_Y, Prediction, monotone
from .lgbm import _best_f1_threshold

if TYPE_CHECKING:  # tables come from training and evaluation; serving never imports pandas
    import pandas as pd


class NearestNeighbours:
    kind: ClassVar[str] = "knn"

    def __init__(self, spread_scale: float = 1.0, min_spread: float = 0.1, levels: tuple[float, ...] = LEVELS):
        self.levels = tuple(levels)
        self.spread_scale = spread_scale
        self.min_spread = min_spread
        self.long_threshold = 0.5
        self.cols: list[int] = []
        self.fallback = 0.0

    def _center_spread(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        exact_y, knn_y, knn_std, knn_long = (X[:, c] for c in self.cols)
        center = np.where(np.isnan(exact_y), knn_y, exact_y)
        center = np.where(np.isnan(center), self.fallback, center)
        spread = np.maximum(np.nan_to_num(knn_std, nan=1.0) * self.spread_scale, self.min_spread)
        return center, spread, np.nan_to_num(knn_long)

    def fit(self, calls: pd.DataFrame, X: np.ndarray, y: np.ndarray, names: list[str]) -> "NearestNeighbours":
        missing = [n for n in ("m_exact_y", "m_knn_y", "m_knn_std", "m_knn_long") if n not in names]
        if missing:
            raise ValueError(f"the knn model needs the memory features (features.memory=true); missing {missing}")
        self.cols = [names.index(n) for n in ("m_exact_y", "m_knn_y", "m_knn_std", "m_knn_long")]
        self.fallback = float(np.median(y))
        center, spread, p_long = self._center_spread(X)
        # the spread scale that makes the out-of-fold memory features cover 90% at p90
        z = (y - center) / spread
        self.spread_scale = float(np.clip(np.quantile(z, 0.9) / NormalDist().inv_cdf(0.9), 0.2, 5.0))
        self.long_threshold = _best_f1_threshold(y >= LONG_Y, p_long)
        return self

    def predict(self, calls: pd.DataFrame | None, X: np.ndarray) -> Prediction:
        center, spread, p_long = self._center_spread(X)
        q = center[:, None] + spread[:, None] * np.array([NormalDist().inv_cdf(lv) for lv in self.levels])[None, :]
        return Prediction(self.levels, monotone(q), p_long)

    def save(self, directory: Path, prefix: str) -> dict[str, Any]:
        return {"spread_scale": self.spread_scale, "min_spread": self.min_spread, "levels": list(self.levels), "cols": self.cols,
                "fallback": self.fallback, "long_threshold": self.long_threshold}

    @classmethod
    def load(cls, directory: Path, prefix: str, state: dict[str, Any]) -> "NearestNeighbours":
        m = cls(state["spread_scale"], state["min_spread"], tuple(state["levels"]))
        m.cols, m.fallback, m.long_threshold = list(state["cols"]), float(state["fallback"]), float(state["long_threshold"])
        return m
