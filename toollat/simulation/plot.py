"""The hit-rate / storage figure: TraceLab's Pareto view with toollat and the oracle on it.

x: equivalent storage ratio Rc (log; equal to the suspended-GPU-KV ratio R for static TTLs),
y: token-weighted hit rate. The static TTL sweep is a labelled curve; per-tool median and
toollat are their swept curves with the default operating point marked; the oracle is its
frontier (no policy can lie above it) with its point at the given costs. Drawn with the Agg
canvas directly, so importing this never changes the process's matplotlib backend.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .policies import ttl_label
from .simulator import SimulationResult

_STYLE = {
    "per_tool_median": ("tab:orange", "--", "per-tool median TTL"),
    "per_tool": ("tab:purple", "-.", "per-tool distribution, same hint rule"),
    "toollat": ("tab:green", "-", "toollat hints"),
    "oracle": ("black", ":", "oracle frontier"),
}


def plot(result: SimulationResult, path: str | Path) -> Path:
    """Write the figure as PNG to ``path``; returns the path."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    pos = lambda xs: np.asarray(xs, dtype=float) > 0  # noqa: E731 - log axis drops x = 0

    static = result.curves.get("static", [])
    x = np.array([p["equiv_storage_ratio"] for p in static], dtype=float)
    y = np.array([p["hit_rate"] for p in static], dtype=float)
    ok = pos(x) & np.isfinite(y)
    ax.plot(x[ok], y[ok], "o-", color="tab:blue", label="static TTL sweep")
    for p in np.array(static, dtype=object)[ok]:
        ax.annotate(ttl_label(p["ttl_s"]), (p["equiv_storage_ratio"], p["hit_rate"]),
                    textcoords="offset points", xytext=(4, -10), fontsize=7, color="tab:blue")
    best = result.policies.get(result.best_static or "")
    if best and best["equiv_storage_ratio"] > 0:
        ax.plot([best["equiv_storage_ratio"]], [best["hit_rate"]], "*", ms=15, color="tab:blue",
                label=f"best static ({ttl_label(result.best_static_ttl_s)})")
        ax.axvline(best["equiv_storage_ratio"], color="tab:blue", lw=0.6, alpha=0.4)

    for name, (color, ls, label) in _STYLE.items():
        if name not in result.frontiers:
            continue
        pts = result.curves[name]
        x = np.array([p["equiv_storage_ratio"] for p in pts], dtype=float)
        y = np.array([p["hit_rate"] for p in pts], dtype=float)
        ok = pos(x) & np.isfinite(y)
        marker = "" if name == "oracle" else "."
        if name == "oracle" and ok.any():  # flat beyond its last point: every gap is a hit
            x, y, ok = np.r_[x, x[ok].max() * 1e3], np.r_[y, y[ok].max()], np.r_[ok, True]
        ax.plot(x[ok], y[ok], marker + ls, color=color, label=label, ms=5)
        m = result.policies.get(name)
        if m and m["equiv_storage_ratio"] > 0:
            ax.plot([m["equiv_storage_ratio"]], [m["hit_rate"]], "D", color=color, ms=7)

    # The oracle frontier runs down to tiny storage; keep the policies' range in view.
    xs = [p["equiv_storage_ratio"] for k in ("static", "per_tool_median", "toollat")
          for p in result.curves.get(k, []) if (p["equiv_storage_ratio"] or 0) > 0]
    if xs:
        ax.set_xlim(min(xs) / 3, max(xs) * 3)

    h = result.headline
    note = [f"gap closed at equal storage: {h['gap_closed_at_equal_storage']:.2f}"
            if h.get("gap_closed_at_equal_storage") is not None else None,
            f"storage at equal hit rate: {h['storage_ratio_at_equal_hit_rate']:.2f}x"
            if h.get("storage_ratio_at_equal_hit_rate") is not None else None]
    ax.set_title("KV-cache policies: hit rate vs suspended KV storage\n"
                 + "; ".join(n for n in note if n), fontsize=10)
    ax.set_xscale("log")
    ax.set_xlabel("storage ratio (held KV-time / active KV-time; offloads in GPU-hold equivalents)")
    ax.set_ylabel("token-weighted hit rate")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    return path
