"""The metrics (the names are a contract, docs/ARCHITECTURE.md), used by training, evaluation and benchmarks.

Latency is compared in log10 seconds with a 10 ms floor. ``p50`` is the point prediction.

- ``mae_log10``, ``medae_log10``: mean / median absolute error of p50
- ``weighted_mae_log10``: the same weighted by the true duration (seconds), so long calls count
- ``within_2x``: share of calls whose p50 is within a factor 2 of the truth
- ``spearman``, ``kendall``: rank correlation of p50 with the truth
- ``pinball_p50``, ``pinball_p90``: quantile (pinball) loss of p50 and p90
- ``coverage_p50``, ``coverage_p90``: share of calls at or below p50 / p90 (ideal 0.5 / 0.9)
- ``long_recall``, ``long_precision``: long = at least 60 s; predicted long = ``p_long`` at or
  above the model's threshold
- ``long_pr_auc``: average precision of ``p_long`` for long calls
- ``underestimate_rate``: share of calls that took more than twice their p50
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import average_precision_score, mean_pinball_loss

from toollat.core.units import LOG2, LONG_MS, to_log10_s

METRICS: tuple[str, ...] = (
    "mae_log10", "medae_log10", "within_2x", "spearman", "kendall", "pinball_p50", "pinball_p90",
    "coverage_p50", "coverage_p90", "long_recall", "long_precision", "long_pr_auc",
    "underestimate_rate", "weighted_mae_log10",
)


def pinball(y: np.ndarray, q: np.ndarray, level: float) -> float:
    return float(mean_pinball_loss(y, q, alpha=level))


def _rank_corr(a: np.ndarray, b: np.ndarray, fn) -> float:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(fn(a, b).statistic)


def average_precision(is_pos: np.ndarray, score: np.ndarray) -> float:
    if is_pos.sum() == 0:
        return float("nan")
    return float(average_precision_score(is_pos, score))


def compute(wall_ms, p50, p90, p_long, long_threshold: float) -> dict[str, float]:
    """All metrics for one model on one set of calls. ``p50``/``p90`` in log10 seconds."""
    y = to_log10_s(wall_ms)
    p50 = np.asarray(p50, dtype=np.float64)
    p90 = np.asarray(p90, dtype=np.float64)
    p_long = np.asarray(p_long, dtype=np.float64)
    n = len(y)
    if n == 0:
        return {"n": 0, **{m: float("nan") for m in METRICS}}
    err = np.abs(y - p50)
    weight = 10.0 ** y
    is_long = np.asarray(wall_ms, dtype=np.float64) >= LONG_MS
    pred_long = p_long >= long_threshold
    tp = float((is_long & pred_long).sum())
    return {
        "n": int(n),
        "mae_log10": float(err.mean()),
        "medae_log10": float(np.median(err)),
        "within_2x": float((err <= LOG2 + 1e-12).mean()),
        "spearman": _rank_corr(p50, y, stats.spearmanr),
        "kendall": _rank_corr(p50, y, stats.kendalltau),
        "pinball_p50": pinball(y, p50, 0.5),
        "pinball_p90": pinball(y, p90, 0.9),
        "coverage_p50": float((y <= p50).mean()),
        "coverage_p90": float((y <= p90).mean()),
        "long_recall": tp / is_long.sum() if is_long.any() else float("nan"),
        "long_precision": tp / pred_long.sum() if pred_long.any() else float("nan"),
        "long_pr_auc": average_precision(is_long, p_long),
        "underestimate_rate": float((y > p50 + LOG2).mean()),
        "weighted_mae_log10": float((err * weight).sum() / weight.sum()),
    }
