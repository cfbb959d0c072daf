"""LightGBM quantile heads on log latency, a long-call classifier, and their calibration.

One booster per quantile level (pinball objective) and a binary booster for "at least 60 s".
Quantiles are made non-crossing by sorting. Calibration is learned out of fold: the training
sessions are split into ``calibration_folds`` groups; boosters trained on the other groups
predict each group, and from those out-of-fold predictions the model learns

- a conformal shift per tool family and level, so each family's coverage of each level matches
  the level (families with fewer than ``calibration_min`` calls share the overall shift), and
- the ``p_long`` threshold that maximizes F1 for long calls.

The final boosters are then fit on all training calls. Boosters are saved as LightGBM text
models (no pickle). Training uses the ``lightgbm`` package; prediction and loading go through
LightGBM's C library alone (``models/booster.py``), so a process that only predicts never
imports the package (or the scikit-learn, pandas and scipy it imports).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from toollat.bundle import member
from toollat.features.text import code

from .base import LEVELS, LONG_Y, Prediction, monotone
from .booster import Booster, RowPredictor

if TYPE_CHECKING:  # tables come from training and evaluation; serving never imports pandas
    import pandas as pd

DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 150, "learning_rate": 0.12, "num_leaves": 63, "min_child_samples": 10,
    "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.7, "reg_lambda": 0.0,
}
DEFAULT_CLASSIFIER: dict[str, Any] = {"n_estimators": 200, "learning_rate": 0.06, "num_leaves": 31, "min_child_samples": 10}


def _best_f1_threshold(is_long: np.ndarray, p: np.ndarray) -> float:
    if is_long.sum() == 0:
        return 0.5
    order = np.argsort(-p)
    tp = np.cumsum(is_long[order])
    k = np.arange(1, len(p) + 1)
    f1 = 2 * tp / (k + is_long.sum())
    best = int(np.argmax(f1))
    return float(p[order][best])


class LightGBMQuantile:
    kind: ClassVar[str] = "lgbm"

    def __init__(self, params: dict[str, Any] | None = None, classifier: dict[str, Any] | None = None,
                 levels: tuple[float, ...] = LEVELS, calibration_folds: int = 3, calibration_min: int = 200,
                 threads: int = 2, seed: int = 0):
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.classifier = {**DEFAULT_CLASSIFIER, **(classifier or {})}
        self.levels = tuple(levels)
        self.calibration_folds = calibration_folds
        self.calibration_min = calibration_min
        self.threads = threads
        self.seed = seed
        self.long_threshold = 0.5
        self.shifts: dict[str, list[float]] = {}   # family -> shift per level ("*": overall)
        self.heads: list[Booster] = []
        self.long: Booster | None = None
        self.categorical: list[int] = []
        self._fast: RowPredictor | None = None
        self._shift_arrays: dict[str, np.ndarray] | None = None

    # -- training -------------------------------------------------------------------------------
    def _fit_boosters(self, X: np.ndarray, y: np.ndarray) -> tuple[list[Booster], Booster]:
        import lightgbm as lgb  # training only (see the module docstring)

        common = {"verbose": -1, "n_jobs": self.threads, "random_state": self.seed}
        heads = []
        for level in self.levels:
            m = lgb.LGBMRegressor(objective="quantile", alpha=level, **self.params, **common)
            m.fit(X, y, categorical_feature=self.categorical)
            heads.append(Booster.of(m.booster_))
        c = lgb.LGBMClassifier(**self.classifier, **common)
        c.fit(X, (y >= LONG_Y).astype(int), categorical_feature=self.categorical)
        return heads, Booster.of(c.booster_)

    def fit(self, calls: pd.DataFrame, X: np.ndarray, y: np.ndarray, names: list[str]) -> "LightGBMQuantile":
        self.categorical = [i for i, n in enumerate(names) if n.startswith("c_")]
        families = calls["tool_family"].to_numpy()
        if self.calibration_folds >= 2:
            fold = np.array([code(str(s)) % self.calibration_folds for s in calls["session_id"]])
            oof_q = np.empty((len(y), len(self.levels)))
            oof_p = np.empty(len(y))
            for f in range(self.calibration_folds):
                inside = fold == f
                if not inside.any() or inside.all():
                    continue
                heads, clf = self._fit_boosters(X[~inside], y[~inside])
                oof_q[inside] = monotone(np.column_stack([h.predict(X[inside]) for h in heads]))
                oof_p[inside] = clf.predict(X[inside])
            self._calibrate(oof_q, oof_p, y, families)
        self.heads, self.long = self._fit_boosters(X, y)
        return self

    def _calibrate(self, q: np.ndarray, p: np.ndarray, y: np.ndarray, families: np.ndarray) -> None:
        def shifts(mask: np.ndarray) -> list[float]:
            # the shift s with mean(y <= q + s) == level is the level-quantile of (y - q)
            return [float(np.quantile(y[mask] - q[mask, j], level)) for j, level in enumerate(self.levels)]

        self._shift_arrays = None
        self.shifts = {"*": shifts(np.ones(len(y), bool))}
        for fam in np.unique(families):
            mask = families == fam
            if mask.sum() >= self.calibration_min:
                self.shifts[str(fam)] = shifts(mask)
        self.long_threshold = _best_f1_threshold(y >= LONG_Y, p)

    # -- prediction -----------------------------------------------------------------------------
    def raw(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = np.column_stack([h.predict(X, num_threads=self.threads) for h in self.heads])
        return q, self.long.predict(X, num_threads=self.threads)

    def raw_one(self, x: np.ndarray) -> tuple[np.ndarray, float]:
        """``raw`` for one row through LightGBM's prepared single-row path (~10x less overhead)."""
        if self._fast is None:
            self._fast = RowPredictor([Booster.of(b) for b in (*self.heads, self.long)], x.shape[-1])
        out = self._fast.predict(x)
        return out[:-1].reshape(1, -1), float(out[-1])

    def calibrated(self, q: np.ndarray, families) -> np.ndarray:
        if self._shift_arrays is None:  # per family as arrays, once: this runs for every prediction
            self._shift_arrays = {k: np.asarray(v, dtype=np.float64) for k, v in self.shifts.items()}
        arrays = self._shift_arrays
        overall = arrays.get("*", np.zeros(len(self.levels)))
        if len(q) == 1:
            return monotone(q + arrays.get(families[0], overall))
        return monotone(q + np.stack([arrays.get(f, overall) for f in families]))

    def predict(self, calls, X: np.ndarray) -> Prediction:
        """``calls`` is any mapping with a ``tool_family`` column (a DataFrame or a dict of lists)."""
        if len(X) == 1:
            q, p1 = self.raw_one(X[0])
            p = np.array([p1])
        else:
            q, p = self.raw(X)
        return Prediction(self.levels, self.calibrated(q, list(calls["tool_family"])), p)

    # -- bundle I/O -------------------------------------------------------------------------------
    def save(self, directory: Path, prefix: str) -> dict[str, Any]:
        files = []
        for level, head in zip(self.levels, self.heads):
            name = f"{prefix}_q{int(round(level * 100)):02d}.txt"
            head.save_model(str(directory / name))
            files.append(name)
        self.long.save_model(str(directory / f"{prefix}_long.txt"))
        return {
            "levels": list(self.levels), "heads": files, "long": f"{prefix}_long.txt",
            "long_threshold": self.long_threshold, "shifts": self.shifts, "params": self.params,
            "classifier": self.classifier, "calibration_folds": self.calibration_folds,
            "calibration_min": self.calibration_min, "threads": self.threads, "seed": self.seed,
        }

    @classmethod
    def load(cls, directory: Path, prefix: str, state: dict[str, Any]) -> "LightGBMQuantile":
        m = cls(state["params"], state["classifier"], tuple(state["levels"]), state["calibration_folds"],
                state["calibration_min"], state["threads"], state["seed"])
        if len(state["heads"]) != len(m.levels):
            raise ValueError("lgbm: one head per level expected")
        m.heads = [Booster.from_file(member(directory, f)) for f in state["heads"]]
        m.long = Booster.from_file(member(directory, state["long"]))
        m.long_threshold = float(state["long_threshold"])
        m.shifts = {k: [float(x) for x in v] for k, v in state["shifts"].items()}
        return m
