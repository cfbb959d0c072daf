"""The model protocol every latency model follows, and what a prediction is.

A model is built from hyper-parameters only; ``fit`` learns from training calls, ``predict``
is pure. Inputs are the calls (a canonical-table DataFrame, which baselines read) and the
feature matrix from the one feature pipeline (which learned models read). Outputs are
quantiles of log10 seconds (non-decreasing across levels) and the probability of a long call.
``save``/``load`` write and read plain files in a bundle directory: JSON, ``.npy`` without
pickle, LightGBM text models.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from toollat.units import LEVELS, LONG_Y, to_ms  # noqa: F401  (re-exported for the models)

if TYPE_CHECKING:  # tables come from training and evaluation; serving never imports pandas
    import pandas as pd


@dataclass
class Prediction:
    levels: tuple[float, ...]
    quantiles: np.ndarray   # (n, len(levels)), log10 seconds, non-decreasing along axis 1
    p_long: np.ndarray      # (n,)

    def q(self, level: float) -> np.ndarray:
        return self.quantiles[:, self.levels.index(level)]

    @property
    def p50(self) -> np.ndarray:
        return self.q(0.5)

    @property
    def p90(self) -> np.ndarray:
        return self.q(0.9)

    def ms(self) -> np.ndarray:
        return to_ms(self.quantiles)

    def __len__(self) -> int:
        return len(self.p_long)


def monotone(q: np.ndarray) -> np.ndarray:
    """Quantiles that do not cross: sorted along the level axis (rearrangement)."""
    return np.sort(q, axis=1)


class LatencyModel(Protocol):
    kind: ClassVar[str]
    levels: tuple[float, ...]
    long_threshold: float

    def fit(self, calls: pd.DataFrame, X: np.ndarray | None, y: np.ndarray, names: list[str]) -> "LatencyModel": ...

    def predict(self, calls: pd.DataFrame | None, X: np.ndarray | None) -> Prediction: ...

    def save(self, directory: Path, prefix: str) -> dict[str, Any]:
        """Write files into ``directory``; return the JSON state needed to load them."""

    @classmethod
    def load(cls, directory: Path, prefix: str, state: dict[str, Any]) -> "LatencyModel": ...
