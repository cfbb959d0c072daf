"""A weighted average of member models' quantiles and long-call probabilities.

Weights are fixed hyper-parameters (``conf/model/ensemble.yaml``); the experiments compare the
ensemble with its members, and the default model is whichever measures best.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from .base import Prediction, monotone

if TYPE_CHECKING:  # tables come from training and evaluation; serving never imports pandas
    import pandas as pd


class Ensemble:
    kind: ClassVar[str] = "ensemble"

    def __init__(self, members: list[Any], weights: list[float]):
        if len(members) != len(weights) or not members:
            raise ValueError("an ensemble needs one weight per member")
        total = float(sum(weights))
        self.members = members
        self.levels = tuple(members[0].levels)
        if any(tuple(m.levels) != self.levels for m in members):
            raise ValueError("ensemble members must predict the same levels")
        self.weights = [w / total for w in weights]
        self.long_threshold = 0.5

    def fit(self, calls: pd.DataFrame, X: np.ndarray, y: np.ndarray, names: list[str]) -> "Ensemble":
        for m in self.members:
            m.fit(calls, X, y, names)
        self.long_threshold = float(sum(w * m.long_threshold for w, m in zip(self.weights, self.members)))
        return self

    def predict(self, calls: pd.DataFrame | None, X: np.ndarray) -> Prediction:
        preds = [m.predict(calls, X) for m in self.members]
        q = sum(w * p.quantiles for w, p in zip(self.weights, preds))
        p_long = sum(w * p.p_long for w, p in zip(self.weights, preds))
        return Prediction(self.levels, monotone(q), p_long)

    def save(self, directory: Path, prefix: str) -> dict[str, Any]:
        return {"weights": self.weights, "long_threshold": self.long_threshold,
                "members": [{"kind": m.kind, "state": m.save(directory, f"{prefix}_{i}")} for i, m in enumerate(self.members)]}

    @classmethod
    def load(cls, directory: Path, prefix: str, state: dict[str, Any]) -> "Ensemble":
        from . import MODELS

        members = [MODELS[m["kind"]].load(directory, f"{prefix}_{i}", m["state"]) for i, m in enumerate(state["members"])]
        e = cls(members, state["weights"])
        e.long_threshold = float(state["long_threshold"])
        return e
