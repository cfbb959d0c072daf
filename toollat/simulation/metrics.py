"""What a policy costs and gains over the gaps: hit rate, storage, prefill, offload traffic.

Per gap of length G holding N tokens (``gaps.Gaps``), a decision (action, TTL T) plays out as:

- keep: GPU holds the KV for min(G, T); a hit if G <= T, else dropped at T and re-prefilled —
  unless the decision demotes it at T (``demote_s`` D > 0): then it moves to host memory and
  stays min(G - T, D) there; a hit if G <= T + D (moved back: N tokens each way).
- offload: the KV moves to host memory at once and stays min(G, T) there; a hit if G <= T
  (moved back: N tokens each way), else dropped at T and re-prefilled.
- drop: a miss; the resumed request re-prefills N tokens.

Metrics (token-weighted; ``A`` = active KV token-seconds, ``gaps.active_kv``):

- ``hit_rate``: share of resumed context tokens reused without a re-prefill, sum N*hit / sum N.
  An offloaded-and-reloaded KV counts as a hit (as TraceLab counts any context reused without
  re-prefill) and costs offload traffic. This is TraceLab's ``cacheable`` share: TraceLab
  divides by all prompt tokens (fresh ones included), so its hit rate tops out below 1.
- ``storage_ratio`` R: suspended GPU KV over active KV, sum N * GPU-held seconds / A
  (TraceLab's storage ratio). ``host_storage_ratio``: the same for host memory.
- ``equiv_storage_ratio`` Rc: everything a policy spends to keep context, in GPU-hold seconds
  (``toollat.hints`` units) over A: (sum N*GPU-held + r * sum N*host-held + O * sum N*offloaded)
  / A. Equal to R for hold-only policies; the storage axis of every "at equal storage"
  comparison, because counting offloads as free would let an offloading policy beat the
  oracle bound.
- ``cost_ratio``: Rc + B * re-prefilled tokens / A — the total cost the hint minimizes, per
  active KV-second; the criterion for the best static TTL.
- ``prefill_amplification``: (tokens prefilled with this policy) / (tokens prefilled without
  any eviction) = (baseline + re-prefilled) / baseline, where the baseline is every stream's
  fresh tokens (``gaps.baseline_prefill``); TraceLab's A(tau); 1 = no eviction ever hurt.
- ``reprefill_tokens``, ``offload_tokens`` (tokens moved, both directions), action shares.

``by_kind`` (tool / human): hit rate within the kind; storage ratios and amplification as the
kind's share over the same totals (so the kinds' ratios add up to the overall ones, and a
kind's amplification is 1 + its re-prefills / baseline).

``oracle_frontier`` is the best hit rate any policy can reach at a given Rc: each hit costs at
least N * min(G, O + r*G) (held G on GPU, or offloaded and held G on host), so the best set of
hits for a budget is a knapsack whose fractional relaxation is filled by ascending
min(G, O + r*G). That greedy order is exactly the ``Oracle`` as its breakeven B grows, and the
piecewise-linear curve through its prefixes is the fractional optimum: no decision this model
can express (keep / offload / drop with any TTL, per gap) lies above it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from toollat.hints import HintCosts

from .gaps import Gaps
from .policies import DROP, KEEP, OFFLOAD, Decision


def _ratio(a: float, b: float) -> float:
    return float(a / b) if b > 0 else float("nan")


def evaluate(gaps: Gaps, decision: Decision, costs: HintCosts) -> dict[str, Any]:
    """All metrics of one decision over the gaps (module docstring), with a tool/human breakdown."""
    g, n, is_tool = gaps.gap_s, gaps.tokens, gaps.is_tool
    act = np.asarray(decision.action)
    ttl = np.asarray(decision.ttl_s, dtype=np.float64)
    if len(act) != len(g) or len(ttl) != len(g):
        raise ValueError("a decision must have one action and one TTL per gap")
    demote = np.zeros(len(g)) if decision.demote_s is None else np.asarray(decision.demote_s, dtype=np.float64)
    keep, off = act == KEEP, act == OFFLOAD
    demoted = keep & (demote > 0) & (g > ttl)          # kept, outlived its TTL, moved to host
    held = np.minimum(g, ttl)
    hit = (keep | off) & (g <= ttl) | demoted & (g <= ttl + demote)
    host = np.where(off, held, 0.0) + np.where(demoted, np.minimum(g - ttl, demote), 0.0)
    moved = off | demoted
    parts = {
        "tokens": n,
        "hit": n * hit,
        "gpu": n * np.where(keep, held, 0.0),
        "host": n * host,
        "offloaded": n * moved,
        "reloaded": n * (moved & hit),
        "reprefill": n * ~hit,
    }
    # Sums per kind in one pass each: [human, tool].
    by_kind = {k: np.bincount(is_tool, weights=v, minlength=2) for k, v in parts.items()}
    counts = np.bincount(is_tool, minlength=2)
    out = _summary({k: float(v.sum()) for k, v in by_kind.items()}, int(counts.sum()), gaps, costs)
    out["keep_share"] = _ratio(keep.sum(), len(g))
    out["offload_share"] = _ratio(off.sum(), len(g))
    out["drop_share"] = _ratio((act == DROP).sum(), len(g))
    out["fallback_gaps"] = int(decision.fallback)
    out["by_kind"] = {kind: _summary({k: float(v[i]) for k, v in by_kind.items()}, int(counts[i]), gaps, costs)
                      for kind, i in (("tool", 1), ("human", 0))}
    return out


def _summary(s: dict[str, float], count: int, gaps: Gaps, costs: HintCosts) -> dict[str, Any]:
    a = gaps.active_kv
    equiv = s["gpu"] + costs.offload_hold_ratio * s["host"] + costs.offload_cost_s * s["offloaded"]
    return {
        "gaps": count,
        "tokens": s["tokens"],
        "hit_rate": _ratio(s["hit"], s["tokens"]),
        "storage_ratio": _ratio(s["gpu"], a),
        "host_storage_ratio": _ratio(s["host"], a),
        "equiv_storage_ratio": _ratio(equiv, a),
        "cost_ratio": _ratio(equiv + costs.breakeven_s * s["reprefill"], a),
        "prefill_amplification": _ratio(gaps.baseline_prefill + s["reprefill"], gaps.baseline_prefill),
        "reprefill_tokens": s["reprefill"],
        "offload_tokens": s["offloaded"] + s["reloaded"],  # out when offloaded, back when reused
    }


@dataclass(frozen=True)
class Curve:
    """Hit rate against equivalent storage ratio, piecewise linear, x strictly increasing, y
    non-decreasing (read as "the best hit rate at storage no larger than x")."""

    x: np.ndarray
    y: np.ndarray

    @classmethod
    def from_points(cls, x, y, hull: bool = True) -> "Curve":
        """A curve through operating points plus (0, 0) (drop everything), NaNs ignored.

        With ``hull`` the upper concave envelope: a point on a segment between two operating
        points is reached by running either policy per request at random in proportion, so
        it is achievable; without it the points are joined as given (for curves concave by
        construction, like the oracle's, the two agree).
        """
        x = np.concatenate([[0.0], np.asarray(x, dtype=np.float64)])
        y = np.concatenate([[0.0], np.asarray(y, dtype=np.float64)])
        ok = np.isfinite(x) & np.isfinite(y)
        x, y = x[ok], y[ok]
        order = np.lexsort((y, x))
        x, y = x[order], y[order]
        last = np.r_[x[1:] != x[:-1], True]  # the best y at each x
        x, y = x[last], y[last]
        if hull and len(x) > 2:
            keep: list[int] = []
            for i in range(len(x)):
                while len(keep) >= 2:
                    a, b = keep[-2], keep[-1]
                    # b is under the chord a -> i: not on the upper envelope.
                    if (y[b] - y[a]) * (x[i] - x[a]) <= (y[i] - y[a]) * (x[b] - x[a]):
                        keep.pop()
                    else:
                        break
                keep.append(i)
            x, y = x[keep], y[keep]
        return cls(x, np.maximum.accumulate(y))

    def hit_rate_at(self, storage: float) -> float:
        """Linear interpolation at ``storage``; beyond the last point, the last hit rate."""
        if not np.isfinite(storage) or len(self.x) == 0:
            return float("nan")
        return float(np.interp(storage, self.x, self.y))

    def storage_at(self, hit_rate: float) -> float:
        """The least storage reaching ``hit_rate`` (linear in between); NaN if never reached."""
        if not np.isfinite(hit_rate) or len(self.x) == 0 or hit_rate > self.y[-1] + 1e-12:
            return float("nan")
        i = int(np.searchsorted(self.y, hit_rate, side="left"))
        if i == 0:
            return float(self.x[0])
        x0, x1, y0, y1 = self.x[i - 1], self.x[i], self.y[i - 1], self.y[i]
        return float(x0 + (x1 - x0) * (hit_rate - y0) / (y1 - y0))

    def points(self, max_points: int = 200) -> list[dict[str, float]]:
        """At most ``max_points`` of the curve for JSON (evenly spread, ends kept)."""
        idx = np.unique(np.linspace(0, len(self.x) - 1, min(max_points, len(self.x))).round().astype(int)) \
            if len(self.x) else np.array([], dtype=int)
        return [{"equiv_storage_ratio": float(self.x[i]), "hit_rate": float(self.y[i])} for i in idx]


def oracle_frontier(gaps: Gaps, costs: HintCosts) -> Curve:
    """The oracle's curve (module docstring): no policy's (Rc, hit rate) lies above it."""
    g, n = gaps.gap_s, gaps.tokens
    if len(g) == 0 or gaps.active_kv <= 0 or n.sum() <= 0:
        return Curve(np.array([0.0]), np.array([0.0]))
    c = np.minimum(g, costs.offload_cost_s + costs.offload_hold_ratio * g)
    order = np.argsort(c, kind="stable")
    x = np.cumsum(n[order] * c[order]) / gaps.active_kv
    y = np.cumsum(n[order]) / n.sum()
    return Curve.from_points(x, y, hull=False)
