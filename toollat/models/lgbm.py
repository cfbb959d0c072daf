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

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from toollat.bundle import member

from .base import LEVELS, LONG_Y, BoosterSpec, Prediction, TrainingData, monotone
from .booster import Booster, RowPredictor

LONG_S = 10.0 ** LONG_Y   # the long classifier's threshold (s): exceed_s adds others

# 300 trees at 0.06 score as 600 at 0.03 here, in half the time
DEFAULT_PARAMS: dict[str, Any] = {
    "n_estimators": 150, "learning_rate": 0.12, "num_leaves": 63, "min_child_samples": 10,
    "subsample": 0.8, "subsample_freq": 1, "colsample_bytree": 0.7, "reg_lambda": 0.0,
}
DEFAULT_CLASSIFIER: dict[str, Any] = {"n_estimators": 200, "learning_rate": 0.06, "num_leaves": 31, "min_child_samples": 10}
# Exceedance classifiers: small, since every booster is walked on every prediction
DEFAULT_EXCEEDANCE: dict[str, Any] = {"n_estimators": 40, "learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 20}
COMBINES = ("none", "clip", "interp")


@dataclass(frozen=True)
class LightGBMSpec:
    """``model.kind=lgbm``'s settings and their defaults (``conf/model/lgbm.yaml`` states none):
    LightGBM's scikit-learn parameters of the quantile heads and of the long classifier (merged
    over these), and the out-of-fold calibration."""

    kind: str = "lgbm"
    calibration_folds: int = 3
    calibration_min: int = 200
    params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_PARAMS))
    classifier: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_CLASSIFIER))
    # P(latency >= t) learned at these thresholds (seconds; the long classifier is the one at
    # 60 s) and how the quantiles are made to agree with them (``exceedance_quantiles``)
    exceed_s: list[float] = field(default_factory=list)
    exceed_params: dict[str, Any] = field(default_factory=lambda: dict(DEFAULT_EXCEEDANCE))
    combine: str = "interp"

    def __post_init__(self) -> None:
        if self.combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, not {self.combine!r}")
        if any(not (isinstance(t, (int, float)) and t > 0) for t in self.exceed_s) or LONG_S in self.exceed_s \
                or len(set(self.exceed_s)) != len(self.exceed_s):
            raise ValueError(f"exceed_s: distinct positive seconds other than {LONG_S:g} (the long classifier's)")


def _best_f1_threshold(is_long: np.ndarray, p: np.ndarray) -> float:
    if is_long.sum() == 0:
        return 0.5
    order = np.argsort(-p)
    tp = np.cumsum(is_long[order])
    k = np.arange(1, len(p) + 1)
    f1 = 2 * tp / (k + is_long.sum())
    best = int(np.argmax(f1))
    return float(p[order][best])


def exceedance_quantiles(levels, q: np.ndarray, thresholds_y: np.ndarray, p: np.ndarray, how: str = "interp") -> np.ndarray:
    """Quantiles (rows, log10 s) made to agree with exceedance probabilities ``p`` (rows, one per
    threshold, thresholds ascending in log10 s): the mirror of ``units.p_exceeds``, which fits a
    probability into the quantiles' bracket; here the probabilities, learned directly at the
    decision thresholds, bound the quantiles.

    The probabilities are first made non-increasing in the threshold (sorted, as crossed
    quantiles are). P(>= t_k) = p_k puts level l's quantile at or above t_k when 1 - p_k < l and
    at or below it otherwise; a quantile outside that bracket is moved into it: to the nearer
    end (``clip``) or, between two thresholds, to where the CDF interpolated linearly in log
    latency between them reaches l (``interp``; beyond the outer thresholds, to the threshold).
    Quantiles already inside their bracket stay; the result is then sorted along the levels (a
    quantile moved by ``interp`` can pass one that stayed in the same bracket), which keeps
    every quantile in its bracket (the brackets do not decrease with the level)."""
    if how == "none" or p.shape[1] == 0:
        return q
    levels = np.asarray(levels, dtype=np.float64)
    t = np.asarray(thresholds_y, dtype=np.float64)
    cdf = 1.0 - (-np.sort(-np.asarray(p, dtype=np.float64), axis=1))          # ascending along thresholds
    out = np.array(q, dtype=np.float64, copy=True)
    n, k = cdf.shape
    for j, level in enumerate(levels):
        below = cdf < level                                                   # thresholds level's quantile is at or above
        m = below.sum(axis=1)                                                 # thresholds under it (CDF sorted)
        lo = np.where(m > 0, t[np.maximum(m - 1, 0)], -np.inf)
        hi = np.where(m < k, t[np.minimum(m, k - 1)], np.inf)
        v = out[:, j]
        if how == "interp":
            inner = (m > 0) & (m < k) & ((v < lo) | (v > hi))
            if inner.any():
                c0 = cdf[inner, m[inner] - 1]
                c1 = cdf[inner, m[inner]]
                frac = np.where(c1 > c0, (level - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.5)
                v[inner] = lo[inner] + frac * (hi[inner] - lo[inner])
        out[:, j] = np.clip(v, lo, hi)
    return np.sort(out, axis=1)   # a moved quantile may pass one that stayed in the same bracket


def exceedance_quantiles_one(levels, q: list[float], thresholds_y, p: list[float], how: str = "interp") -> list[float]:
    """``exceedance_quantiles`` of one row in Python floats (a serving call: numpy's per-call
    overhead on one row is ~50 us, this ~5 us); the same operations in the same order, so the
    same numbers to the last bit (tests/test_one_call_paths.py)."""
    if how == "none" or not p:
        return list(q)
    cdf = [1.0 - x for x in sorted(p, reverse=True)]
    k = len(cdf)
    out = []
    for j, level in enumerate(levels):
        m = sum(c < level for c in cdf)
        lo = float(thresholds_y[m - 1]) if m > 0 else -math.inf
        hi = float(thresholds_y[m]) if m < k else math.inf
        v = float(q[j])
        if how == "interp" and 0 < m < k and (v < lo or v > hi):
            c0, c1 = cdf[m - 1], cdf[m]
            v = lo + ((level - c0) / (c1 - c0) if c1 > c0 else 0.5) * (hi - lo)
        out.append(min(max(v, lo), hi))
    return sorted(out)


class LightGBMQuantile:
    kind: ClassVar[str] = "lgbm"

    def __init__(self, params: dict[str, Any] | None = None, classifier: dict[str, Any] | None = None,
                 levels: tuple[float, ...] = LEVELS, calibration_folds: int = LightGBMSpec.calibration_folds,
                 calibration_min: int = LightGBMSpec.calibration_min, threads: int = 2, seed: int = 0,
                 exceed_s: list[float] | tuple[float, ...] = (), exceed_params: dict[str, Any] | None = None,
                 combine: str = "interp"):
        self.params = {**DEFAULT_PARAMS, **(params or {})}
        self.classifier = {**DEFAULT_CLASSIFIER, **(classifier or {})}
        self.exceed_s = tuple(float(t) for t in exceed_s)
        self.exceed_params = {**DEFAULT_EXCEEDANCE, **(exceed_params or {})}
        self.combine = combine
        self.exceed: list[Booster] = []
        # every threshold with a classifier, ascending (log10 s), and where the long one sits among them
        ts = sorted((*self.exceed_s, LONG_S))
        self._thresholds_y = np.log10(np.asarray(ts, dtype=np.float64))
        self._order = [ts.index(LONG_S), *(ts.index(t) for t in self.exceed_s)]   # raw column -> threshold
        self._thresholds_list = self._thresholds_y.tolist()
        self.levels = tuple(levels)
        self._levels_f = [float(x) for x in np.asarray(self.levels, dtype=np.float64)]
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

    # -- training ---------------------------------------------------------------------------------
    def specs(self) -> list[BoosterSpec]:
        """The boosters a fit trains: one quantile regressor per level, then the long classifier."""
        common = {"verbose": -1, "n_jobs": self.threads, "random_state": self.seed}
        heads = [BoosterSpec("regressor", {"objective": "quantile", "alpha": level, **self.params, **common})
                 for level in self.levels]
        exceed = [BoosterSpec("classifier", {**self.exceed_params, **common}, threshold=float(np.log10(t)))
                  for t in self.exceed_s]
        return heads + [BoosterSpec("classifier", {**self.classifier, **common}, threshold=LONG_Y)] + exceed

    def fit(self, data: TrainingData) -> "LightGBMQuantile":
        """Calibration out of fold (the boosters of the other folds predict each fold's rows),
        then the boosters on every row; ``data`` boosts where it holds the rows (the ``lightgbm``
        package, in this process or with ``lightgbm.dask``)."""
        self.categorical = data.categorical
        specs = self.specs()
        k = self.calibration_folds
        if k >= 2:
            sizes = data.fold_sizes(k)
            parts = []
            for f in range(k):
                if sizes[f] == 0 or sizes[f] == data.n:
                    continue  # no rows to predict, or none to learn from
                parts.append(data.predict_fold(data.boost(specs, exclude_fold=(f, k)), f, k))
            if parts:
                raw, y, families, row = (np.concatenate(x) for x in zip(*parts))
                order = np.argsort(row, kind="stable")   # one order whatever held the rows
                raw, y, families = raw[order], y[order], families[order]
                L = len(self.levels)
                self._calibrate(monotone(raw[:, :L]), raw[:, L], y, families)
        boosters = [Booster.of(b) for b in data.boost(specs)]
        L = len(self.levels)
        self.heads, self.long, self.exceed = boosters[:L], boosters[L], boosters[L + 1:]
        self._fast = None
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
    def raw(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Every booster on rows: the heads' quantiles, P(long), and P(>= t) per ``exceed_s``."""
        q = np.column_stack([h.predict(X, num_threads=self.threads) for h in self.heads])
        e = np.column_stack([b.predict(X, num_threads=self.threads) for b in self.exceed]) if self.exceed \
            else np.zeros((len(X), 0))
        return q, self.long.predict(X, num_threads=self.threads), e

    def raw_one(self, x: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
        """``raw`` for one row through LightGBM's prepared single-row path (~10x less overhead)."""
        if self._fast is None:
            self._fast = RowPredictor([Booster.of(b) for b in (*self.heads, self.long, *self.exceed)], x.shape[-1])
        out = self._fast.predict(x)
        L = len(self.heads)
        return out[:L].reshape(1, -1), float(out[L]), out[L + 1:].reshape(1, -1)

    def sharpened(self, q: np.ndarray, p_long: np.ndarray, exceed: np.ndarray) -> np.ndarray:
        """The quantiles made to agree with the exceedance classifiers (``exceedance_quantiles``):
        the long classifier and those of ``exceed_s``, at their thresholds."""
        if not self.exceed_s or self.combine == "none":
            return q
        if len(q) == 1:   # a serving call
            p1 = [0.0] * len(self._order)
            p1[self._order[0]] = float(p_long[0])
            for j, col in enumerate(self._order[1:]):
                p1[col] = float(exceed[0, j])
            return np.array([exceedance_quantiles_one(self._levels_f, q[0].tolist(), self._thresholds_list, p1,
                                                      self.combine)])
        p = np.empty((len(q), len(self._order)))
        p[:, self._order[0]] = p_long
        for j, col in enumerate(self._order[1:]):
            p[:, col] = exceed[:, j]
        return exceedance_quantiles(self.levels, q, self._thresholds_y, p, self.combine)

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
            q, p1, e = self.raw_one(X[0])
            p = np.array([p1])
        else:
            q, p, e = self.raw(X)
        return Prediction(self.levels, self.sharpened(self.calibrated(q, list(calls["tool_family"])), p, e), p)

    # -- bundle I/O -------------------------------------------------------------------------------
    def save(self, directory: Path, prefix: str) -> dict[str, Any]:
        files = []
        for level, head in zip(self.levels, self.heads):
            name = f"{prefix}_q{int(round(level * 100)):02d}.txt"
            head.save_model(str(directory / name))
            files.append(name)
        self.long.save_model(str(directory / f"{prefix}_long.txt"))
        exceed = []
        for t, b in zip(self.exceed_s, self.exceed):
            name = f"{prefix}_exceed_{t:g}s.txt"
            b.save_model(str(directory / name))
            exceed.append(name)
        state = {
            "levels": list(self.levels), "heads": files, "long": f"{prefix}_long.txt",
            "long_threshold": self.long_threshold, "shifts": self.shifts, "params": self.params,
            "classifier": self.classifier, "calibration_folds": self.calibration_folds,
            "calibration_min": self.calibration_min, "threads": self.threads, "seed": self.seed,
        }
        if self.exceed_s:   # a bundle without exceedance classifiers keeps its card as it was
            state.update({"exceed_s": list(self.exceed_s), "exceed": exceed, "exceed_params": self.exceed_params,
                          "combine": self.combine})
        return state

    @classmethod
    def load(cls, directory: Path, prefix: str, state: dict[str, Any]) -> "LightGBMQuantile":
        m = cls(state["params"], state["classifier"], tuple(state["levels"]), state["calibration_folds"],
                state["calibration_min"], state["threads"], state["seed"], state.get("exceed_s", ()),
                state.get("exceed_params"), state.get("combine", "interp"))
        if len(state["heads"]) != len(m.levels):
            raise ValueError("lgbm: one head per level expected")
        if len(state.get("exceed", ())) != len(m.exceed_s):
            raise ValueError("lgbm: one exceedance classifier per threshold expected")
        m.heads = [Booster.from_file(member(directory, f)) for f in state["heads"]]
        m.long = Booster.from_file(member(directory, state["long"]))
        m.exceed = [Booster.from_file(member(directory, f)) for f in state.get("exceed", ())]
        m.long_threshold = float(state["long_threshold"])
        m.shifts = {k: [float(x) for x in v] for k, v in state["shifts"].items()}
        return m
