"""The model protocol every latency model follows, and what a prediction is.

A model is built from hyper-parameters only; ``fit(data)`` learns from training rows,
``predict`` is pure. ``data`` is a ``TrainingData``: the in-scope training rows (``Rows``: the
feature matrix from the one feature pipeline, the target and a few per-row keys), held in this
process (``LocalData``) or across a cluster's workers (``distributed.DaskData``); a model asks it
to boost LightGBM models (``boost``, the same call on either), to predict a calibration fold
(``predict_fold``), or for the matrix itself (``matrix``, this process only). Baselines learn
from the rows' narrow table (``Rows.narrow``: tool, family, command, target). Predicting takes
the calls (a DataFrame or a mapping with ``tool_family`` / ``tool_name``) and a feature matrix. Outputs are
quantiles of log10 seconds (non-decreasing across levels) and the probability of a long call.
``save``/``load`` write and read plain files in a bundle directory: JSON, ``.npy`` without
pickle, LightGBM text models.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

from toollat.core.units import LEVELS, LONG_Y, to_ms  # noqa: F401  (re-exported for the models)

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


@dataclass
class Rows:
    """In-scope training rows with a known target, from one partition of training calls."""

    X: np.ndarray            # (n, features) float32
    y: np.ndarray            # target, log10 s
    tool_name: np.ndarray    # object
    tool_family: np.ndarray  # object
    command: np.ndarray      # uint64, ``baselines.command_key`` (the per-command baseline's key)
    session: np.ndarray      # uint64, ``core.hashing.session_hash`` (calibration folds)
    row: np.ndarray          # uint64, a hash of (session, seq): a row's identity across executors

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def empty(cls, n_features: int) -> "Rows":
        return cls(np.zeros((0, n_features), np.float32), np.zeros(0), np.zeros(0, dtype=object), np.zeros(0, dtype=object),
                   *(np.zeros(0, dtype=np.uint64) for _ in range(3)))

    @classmethod
    def concat(cls, parts: list["Rows"]) -> "Rows":
        return cls(*(np.concatenate([getattr(p, f) for p in parts]) for f in cls.__dataclass_fields__))

    def narrow(self) -> pd.DataFrame:
        """What the baselines learn from: ``tool_name``, ``tool_family``, ``command``, ``y``."""
        import pandas as pd

        return pd.DataFrame({"tool_name": self.tool_name, "tool_family": self.tool_family,
                             "command": self.command, "y": self.y})


@dataclass(frozen=True)
class BoosterSpec:
    """One LightGBM model to train on the rows: a regressor on the target, or a classifier of
    ``y >= threshold``, with LightGBM's scikit-learn parameters."""

    kind: str                                   # "regressor" or "classifier"
    params: dict[str, Any] = field(default_factory=dict)
    threshold: float | None = None              # classifier: the label is y >= threshold


def fold_of(session: np.ndarray, k: int) -> np.ndarray:
    """The calibration fold of rows by their session hash (``core.hashing.session_fold``)."""
    return (session % np.uint64(k)).astype(np.int64)


class TrainingData(Protocol):
    """Training rows wherever they are held (module docstring)."""

    names: list[str]
    n: int

    @property
    def categorical(self) -> list[int]: ...

    def fold_sizes(self, k: int) -> np.ndarray: ...

    def boost(self, specs: list[BoosterSpec], exclude_fold: tuple[int, int] | None = None) -> list: ...

    def predict_fold(self, boosters: list, fold: int, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]: ...

    def narrow(self) -> pd.DataFrame: ...

    def matrix(self) -> tuple[np.ndarray, np.ndarray]: ...

    def collect(self) -> Rows: ...


def categorical_columns(names: list[str]) -> list[int]:
    """Columns LightGBM treats as categorical: the vocabulary codes (``c_*``)."""
    return [i for i, n in enumerate(names) if n.startswith("c_")]


def train_booster(spec: BoosterSpec, X, y, categorical: list[int]):
    """One LightGBM model in this process; its Booster."""
    import lightgbm as lgb

    if spec.kind == "regressor":
        m = lgb.LGBMRegressor(**spec.params)
        m.fit(X, y, categorical_feature=categorical)
    else:
        m = lgb.LGBMClassifier(**spec.params)
        m.fit(X, (np.asarray(y) >= spec.threshold).astype(int), categorical_feature=categorical)
    return m.booster_


def predict_boosters(boosters: list, X: np.ndarray) -> np.ndarray:
    """(n, len(boosters)): each booster's raw prediction (a classifier's: the probability)."""
    if len(X) == 0:
        return np.zeros((0, len(boosters)))
    return np.column_stack([b.predict(X) for b in boosters])


class LocalData:
    """Training rows held in this process (the local executor's ``TrainingData``)."""

    def __init__(self, rows: Rows, names: list[str]):
        self.rows = rows
        self.names = list(names)
        self.n = len(rows)

    @property
    def categorical(self) -> list[int]:
        return categorical_columns(self.names)

    def fold_sizes(self, k: int) -> np.ndarray:
        return np.bincount(fold_of(self.rows.session, k), minlength=k)

    def boost(self, specs: list[BoosterSpec], exclude_fold: tuple[int, int] | None = None) -> list:
        X, y = self.rows.X, self.rows.y
        if exclude_fold is not None:
            keep = fold_of(self.rows.session, exclude_fold[1]) != exclude_fold[0]
            X, y = X[keep], y[keep]
        return [train_booster(s, X, y, self.categorical) for s in specs]

    def predict_fold(self, boosters: list, fold: int, k: int):
        """The rows of calibration fold ``fold``: (raw predictions, y, family, row hash)."""
        inside = fold_of(self.rows.session, k) == fold
        r = self.rows
        return predict_boosters(boosters, r.X[inside]), r.y[inside], r.tool_family[inside], r.row[inside]

    def narrow(self) -> pd.DataFrame:
        return self.rows.narrow()

    def matrix(self) -> tuple[np.ndarray, np.ndarray]:
        return self.rows.X, self.rows.y

    def collect(self) -> Rows:
        """Every row, in this process."""
        return self.rows


class LatencyModel(Protocol):
    kind: ClassVar[str]
    levels: tuple[float, ...]
    long_threshold: float

    def fit(self, data: TrainingData) -> "LatencyModel": ...

    def predict(self, calls: pd.DataFrame | None, X: np.ndarray | None) -> Prediction: ...

    def save(self, directory: Path, prefix: str) -> dict[str, Any]:
        """Write files into ``directory``; return the JSON state needed to load them."""

    @classmethod
    def load(cls, directory: Path, prefix: str, state: dict[str, Any]) -> "LatencyModel": ...
