"""Units and names every part of toollat shares: one place for each.

- Latency is modelled in **log10 seconds with a 10 ms floor** (``to_log10_s`` for arrays,
  ``to_log`` for one value); predictions leave the package in milliseconds.
- A **long call** takes at least ``LONG_S`` (60 s): ``LONG_MS`` in ms, ``LONG_Y`` in log units.
- **Levels** are the predicted quantile levels (``LEVELS`` by default); a level's name is
  ``p<percent>`` (``level_name(0.9) == "p90"``), and its prediction column in a calls table is
  ``pred_<name>_ms``; ``pred_p_long`` is the long-call probability.
- **Targets**: ``wall`` (result_at - emitted_at: what the serving engine waits, the default),
  ``internal`` (runner-reported), ``effective`` (internal where present, else wall).
  ``target_ms`` reads one from a canonical calls table; ``history_ms`` is the latency the
  session history replays for that target (the target where known, else the wall time: a
  result's *arrival* is always its wall time).
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # tables come from training and evaluation; serving never imports pandas
    import pandas as pd

FLOOR_MS = 10.0
LONG_S = 60.0
LONG_MS = LONG_S * 1000.0
LONG_Y = math.log10(LONG_S)
LOG2 = math.log10(2.0)
LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9, 0.99)
TARGETS: tuple[str, ...] = ("wall", "internal", "effective")
P_LONG_COLUMN = "pred_p_long"


def to_log10_s(ms) -> np.ndarray:
    """Latency in ms -> log10 seconds with the 10 ms floor (arrays; NaN stays NaN)."""
    return np.log10(np.maximum(np.asarray(ms, dtype=np.float64), FLOOR_MS) / 1000.0)


def to_log(ms: float) -> float:
    """``to_log10_s`` for one number (the hot path avoids numpy scalars)."""
    return math.log10(max(ms, FLOOR_MS) / 1000.0)


def to_ms(y):
    """log10 seconds -> ms."""
    return 1000.0 * 10.0 ** np.asarray(y, dtype=np.float64)


def level_name(level: float) -> str:
    return f"p{int(round(level * 100))}"


def level_names(levels) -> list[str]:
    return [level_name(lv) for lv in levels]


def prediction_columns(levels=LEVELS) -> list[str]:
    """Quantile columns a predicted calls table carries, in level order (``pred_p50_ms``, ...)."""
    return [f"pred_{level_name(lv)}_ms" for lv in levels]


def check_levels(levels) -> tuple[float, ...]:
    lv = tuple(float(x) for x in levels)
    if not lv or any(not 0.0 < x < 1.0 for x in lv) or list(lv) != sorted(set(lv)) or 0.5 not in lv:
        raise ValueError(f"levels must be increasing, distinct, in (0, 1) and include 0.5; got {list(levels)}")
    return lv


def target_ms(df: pd.DataFrame, target: str) -> np.ndarray:
    """The latency to predict for every call of a canonical table (ms; NaN where unknown)."""
    wall = df["wall_ms"].to_numpy(dtype=np.float64)
    if target == "wall":
        return wall
    internal = df["internal_ms"].to_numpy(dtype=np.float64) if "internal_ms" in df else np.full(len(df), np.nan)
    if target == "internal":
        return internal
    if target == "effective":
        return np.where(np.isnan(internal), wall, internal)
    raise ValueError(f"unknown target {target!r}: one of {', '.join(TARGETS)}")


def history_ms(df: pd.DataFrame, target: str) -> np.ndarray:
    """What the session history and the neighbour memory learn from, for a target: the target's
    latency where known, else the wall time."""
    y = target_ms(df, target)
    return np.where(np.isnan(y), df["wall_ms"].to_numpy(dtype=np.float64), y)


def p_exceeds(levels, values_ms: np.ndarray, threshold_ms: float, p: np.ndarray | None = None) -> np.ndarray:
    """P(latency >= threshold) that agrees with predicted quantiles ``values_ms`` (rows, ms).

    The quantiles bracket the threshold between two levels ``a < b`` (``q_a <= thr < q_b``),
    which bounds the probability to ``[1 - b, 1 - a]``. With a model's own ``p`` (the long-call
    classifier) it is clipped into that bracket, so the two tell one story; without, it is the
    CDF interpolated linearly in log latency between the bracketing levels (beyond the outer
    levels: half-way to 0 or 1)."""
    values_ms = np.asarray(values_ms, dtype=np.float64)
    t = math.log10(threshold_ms)
    if len(values_ms) == 1:  # one call (serving): the same arithmetic on numbers
        return np.array([_p_exceeds_one(levels, values_ms[0], t, None if p is None else float(p[0]))])
    lv = np.asarray(levels, dtype=np.float64)
    v = np.log10(np.maximum(values_ms, 1e-9))
    k = (v <= t).sum(axis=1)                        # levels at or below the threshold
    ext = np.concatenate([[0.0], lv, [1.0]])
    lo_level, hi_level = ext[k], ext[k + 1]         # CDF(thr) lies in [lo_level, hi_level]
    if p is not None:
        return np.clip(np.asarray(p, dtype=np.float64), 1.0 - hi_level, 1.0 - lo_level)
    n = len(lv)
    out = np.empty(len(v))
    rows = np.arange(len(v))
    inner = (k > 0) & (k < n)
    if inner.any():
        a, b = v[rows[inner], k[inner] - 1], v[rows[inner], k[inner]]
        frac = np.where(b > a, (t - a) / np.where(b > a, b - a, 1.0), 1.0)
        out[inner] = 1.0 - (lo_level[inner] + frac * (hi_level[inner] - lo_level[inner]))
    out[k == 0] = 1.0 - lv[0] / 2.0
    out[k == n] = (1.0 - lv[-1]) / 2.0
    return out


def _p_exceeds_one(levels, values_ms: np.ndarray, t: float, p: float | None) -> float:
    v = np.log10(np.maximum(values_ms, 1e-9)).tolist()
    k = sum(x <= t for x in v)
    ext = (0.0, *(float(lv) for lv in levels), 1.0)
    lo_level, hi_level = ext[k], ext[k + 1]
    if p is not None:
        return min(max(p, 1.0 - hi_level), 1.0 - lo_level)
    n = len(v)
    if k == 0:
        return 1.0 - ext[1] / 2.0
    if k == n:
        return (1.0 - ext[n]) / 2.0
    a, b = v[k - 1], v[k]
    frac = (t - a) / (b - a) if b > a else 1.0
    return 1.0 - (lo_level + frac * (hi_level - lo_level))
