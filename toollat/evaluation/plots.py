"""The plots a training run logs (and ``experiments/`` reuse): predicted vs actual, quantile
calibration, error per tool family, long-call precision-recall, ``p_long`` reliability. Each
returns a matplotlib Figure; callers save or log it."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.metrics import precision_recall_curve  # noqa: E402

from toollat.models import Prediction  # noqa: E402
from toollat.core.units import LOG2, LONG_MS, to_log10_s  # noqa: E402

from .metrics import ECE_BINS, calibration_bins, expected_calibration_error  # noqa: E402


def predicted_vs_actual(y_ms: np.ndarray, pred: Prediction, title: str = "toollat"):
    y = to_log10_s(y_ms)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    hb = ax.hexbin(pred.p50, y, gridsize=45, bins="log", cmap="viridis", mincnt=1)
    lo, hi = min(y.min(), pred.p50.min()), max(y.max(), pred.p50.max())
    ax.plot([lo, hi], [lo, hi], "w-", lw=1)
    for s in (-LOG2, LOG2):
        ax.plot([lo, hi], [lo + s, hi + s], "w--", lw=0.7)
    ax.set_xlabel("predicted p50, log10 s")
    ax.set_ylabel("actual, log10 s")
    ax.set_title(f"{title}: predicted vs actual (dashed: 2x)")
    fig.colorbar(hb, ax=ax, label="calls")
    fig.tight_layout()
    return fig


def calibration(y_ms: np.ndarray, pred: Prediction, families: np.ndarray, min_n: int = 200):
    y = to_log10_s(y_ms)
    fig, ax = plt.subplots(figsize=(5.5, 5))
    levels = np.asarray(pred.levels)
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    ax.plot(levels, [(y <= pred.quantiles[:, j]).mean() for j in range(len(levels))], "o-", lw=2, label="all")
    for f in sorted(set(families.tolist())):
        m = families == f
        if m.sum() >= min_n:
            ax.plot(levels, [(y[m] <= pred.quantiles[m, j]).mean() for j in range(len(levels))], ".-", lw=1, alpha=0.8, label=f"{f} ({m.sum()})")
    ax.set_xlabel("nominal quantile level")
    ax.set_ylabel("observed coverage")
    ax.set_title("quantile calibration")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def family_error(per_family: dict[str, dict[str, dict[str, float]]], metric: str = "mae_log10"):
    names = list(per_family)
    fams = sorted({f for d in per_family.values() for f in d})
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / max(len(names), 1)
    x = np.arange(len(fams))
    for i, n in enumerate(names):
        ax.bar(x + i * width, [per_family[n].get(f, {}).get(metric, np.nan) for f in fams], width, label=n)
    ax.set_xticks(x + width * (len(names) - 1) / 2, fams, rotation=30)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per tool family")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def long_pr(y_ms: np.ndarray, preds: dict[str, tuple[Prediction, float]]):
    is_long = np.asarray(y_ms) >= LONG_MS
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, (pred, thr) in preds.items():
        if is_long.sum() == 0:
            continue
        precision, recall, _ = precision_recall_curve(is_long, pred.p_long)
        line, = ax.plot(recall, precision, lw=1.5, label=name)
        at = pred.p_long >= thr
        if at.any():
            ax.plot([(is_long & at).sum() / is_long.sum()], [(is_long & at).sum() / at.sum()], "o", color=line.get_color())
    ax.axhline(0.6, color="grey", ls=":", lw=1)
    ax.axvline(0.6, color="grey", ls=":", lw=1)
    ax.set_xlabel("recall (calls >= 60 s)")
    ax.set_ylabel("precision")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("long calls: precision-recall (dot: operating threshold)")
    if is_long.any():
        ax.legend(fontsize=8)
    else:  # no call of 60 s or more (a small or harvested corpus): no curve, and matplotlib would warn
        ax.text(0.5, 0.5, "no call of 60 s or more", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    return fig


def reliability(y_ms: np.ndarray, preds: dict[str, tuple[Prediction, object]], bins: int = ECE_BINS):
    """``p_long`` reliability: per equal-width bin, the share of calls that were long (>= 60 s)
    against the mean predicted ``p_long`` (the bins of ``p_long_ece``), and below it how many
    calls each bin holds (log scale: most calls sit in the first bin)."""
    is_long = np.asarray(y_ms) >= LONG_MS
    fig, (ax, hist) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], "k:", lw=1)
    edges = np.linspace(0.0, 1.0, bins + 1)
    width = 1.0 / bins / (len(preds) + 1)
    for i, (name, (pred, _)) in enumerate(preds.items()):
        n, mean_p, rate = calibration_bins(is_long, pred.p_long, bins)
        used = n > 0
        ece = expected_calibration_error(is_long, pred.p_long, bins)
        line, = ax.plot(mean_p[used], rate[used], "o-", lw=1.5, label=f"{name} (ECE {ece:.3f})")
        hist.bar(edges[:-1] + (i + 0.5) * width, np.maximum(n, 0.5), width, color=line.get_color(), log=True)
    ax.set_ylabel("observed share of calls >= 60 s")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_title("p_long reliability (dotted: perfect calibration)")
    ax.legend(fontsize=8)
    hist.set_xlabel("predicted p_long")
    hist.set_ylabel("calls")
    fig.tight_layout()
    return fig
