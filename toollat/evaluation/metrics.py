"""The metrics (the names are a contract, docs/ARCHITECTURE.md), used by training, evaluation and benchmarks.

Latency is compared in log10 seconds with a 10 ms floor. ``p50`` is the point prediction.

- ``mae_log10``, ``medae_log10``: mean / median absolute error of p50
- ``weighted_mae_log10``: the same weighted by the true duration (seconds), so long calls count
  (time-weighted MAE)
- ``within_2x``: share of calls whose p50 is within a factor 2 of the truth
- ``spearman``, ``kendall``: rank correlation of p50 with the truth
- ``pinball_p50``, ``pinball_p90``: quantile (pinball) loss of p50 and p90
- ``coverage_p50``, ``coverage_p90``: share of calls at or below p50 / p90 (ideal 0.5 / 0.9)
- ``long_recall``, ``long_precision``: long = at least 60 s; predicted long = ``p_long`` at or
  above the model's threshold
- ``long_pr_auc``: average precision of ``p_long`` for long calls (at least 60 s)
- ``long_pr_auc_30s``: average precision for calls of at least 30 s, scored by P(>= 30 s) read
  off the predicted quantiles (``units.p_exceeds``: no model has a 30 s classifier)
- ``p_long_ece``: expected calibration error of ``p_long`` (``ECE_BINS`` equal-width bins):
  sum over bins of (share of calls in the bin) x |mean p_long - share of long calls|
- ``underestimate_rate``: share of calls that took more than twice their p50
- ``decision_cost``: GPU-hold seconds per call that the KV hint (``toollat.hints``) decided
  from the predicted quantiles costs on the call's realized duration, under the hint costs
  (``decision_costs``). Per call, unweighted: a KV of one unit of size.
- ``decision_gap_closed``: (cost of the fair per-tool policy − the model's cost) / (fair
  per-tool − oracle) (``decision_gap_closed``): 0 = no better than each tool's training
  distribution through the same rule, 1 = the oracle (the cheapest plan knowing the duration).
  The fair per-tool policy is the ``per_tool_median`` baseline's quantiles (each tool's
  training distribution) through the same ``decide_plans``; ``evaluate.report`` supplies its cost.
"""
from __future__ import annotations

import numpy as np
from scipy import stats
from sklearn.metrics import average_precision_score, mean_pinball_loss

from toollat.core.units import LOG2, LONG_MS, p_exceeds, to_log10_s, to_ms
from toollat.hints import HintCosts, decision_costs, decision_gap_closed, oracle_costs

METRICS: tuple[str, ...] = (
    "mae_log10", "medae_log10", "within_2x", "spearman", "kendall", "pinball_p50", "pinball_p90",
    "coverage_p50", "coverage_p90", "long_recall", "long_precision", "long_pr_auc", "long_pr_auc_30s",
    "p_long_ece", "underestimate_rate", "weighted_mae_log10", "decision_cost", "decision_gap_closed",
)
MID_MS = 30_000.0  # the second decision threshold (``long_pr_auc_30s``)
ECE_BINS = 10


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


def calibration_bins(is_pos: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per equal-width bin of ``p`` on [0, 1] (the last bin closed): calls, mean ``p``, share positive
    (NaN for empty bins). The reliability plot and ``expected_calibration_error`` read the same bins."""
    p = np.clip(np.asarray(p, dtype=np.float64), 0.0, 1.0)
    pos = np.asarray(is_pos, dtype=np.float64)
    b = np.minimum((p * bins).astype(np.int64), bins - 1)
    n = np.bincount(b, minlength=bins).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.bincount(b, weights=p, minlength=bins) / n
        rate = np.bincount(b, weights=pos, minlength=bins) / n
    return n, mean_p, rate


def expected_calibration_error(is_pos: np.ndarray, p: np.ndarray, bins: int = ECE_BINS) -> float:
    """Sum over bins of (share of calls) x |mean p − share positive|; NaN without calls."""
    n, mean_p, rate = calibration_bins(is_pos, p, bins)
    if n.sum() == 0:
        return float("nan")
    used = n > 0
    return float((n[used] / n.sum() * np.abs(mean_p[used] - rate[used])).sum())


def compute(wall_ms, levels, quantiles, p_long, long_threshold, costs: HintCosts = HintCosts(),
            fair_cost: float | None = None) -> dict[str, float]:
    """All metrics for one model on one set of calls. ``quantiles`` (calls x ``levels``) in log10
    seconds; ``long_threshold`` a number or one per call (pooled folds keep their own);
    ``fair_cost``: the fair per-tool policy's ``decision_cost`` on the same calls, for
    ``decision_gap_closed`` (NaN without it)."""
    levels = tuple(float(lv) for lv in levels)
    y = to_log10_s(wall_ms)
    q = np.asarray(quantiles, dtype=np.float64).reshape(len(y), len(levels))
    p50, p90 = q[:, levels.index(0.5)], q[:, levels.index(0.9)]
    p_long = np.asarray(p_long, dtype=np.float64)
    n = len(y)
    if n == 0:
        return {"n": 0, **{m: float("nan") for m in METRICS}}
    wall = np.asarray(wall_ms, dtype=np.float64)
    err = np.abs(y - p50)
    weight = 10.0 ** y
    is_long = wall >= LONG_MS
    pred_long = p_long >= np.asarray(long_threshold, dtype=np.float64)
    tp = float((is_long & pred_long).sum())
    q_ms = to_ms(q)
    cost = float(decision_costs(levels, q_ms, wall, costs).mean())
    oracle = float(oracle_costs(wall, costs).mean())
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
        "long_pr_auc_30s": average_precision(wall >= MID_MS, p_exceeds(levels, np.sort(q_ms, axis=1), MID_MS)),
        "p_long_ece": expected_calibration_error(is_long, p_long),
        "underestimate_rate": float((y > p50 + LOG2).mean()),
        "weighted_mae_log10": float((err * weight).sum() / weight.sum()),
        "decision_cost": cost,
        "decision_gap_closed": float("nan") if fair_cost is None else decision_gap_closed(cost, fair_cost, oracle),
    }
