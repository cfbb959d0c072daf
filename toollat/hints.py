"""The KV-cache hint: keep (with a TTL), offload, or drop, from a predicted gap distribution.

One documented policy, used by the Predictor, the HTTP API and the simulator. Costs are in
*GPU-hold seconds*: the cost of keeping a request's KV cache in GPU memory for one second.
Both holding and re-prefilling scale with the context size, so only ratios matter:

- ``breakeven_s`` (B): a re-prefill costs as much as holding the KV for B seconds.
- ``offload_cost_s`` (O): moving the KV to host memory and back costs O.
- ``offload_hold_ratio`` (r): holding in host memory costs r per second (r << 1).

For a gap G with predicted quantiles (a discrete distribution over the predicted levels):

- keep with TTL T: ``E[min(G, T)] + B * P(G > T)`` (dropped at T, re-prefilled later)
- offload:         ``O + r * E[G]``
- drop:            ``B``

The cheapest wins. Keep's TTL is the best T among the predicted quantiles; offload's TTL is the
p99 (how long host memory should hold it). This is the classic rent-or-buy trade-off, decided
per call with the predicted distribution instead of a fixed timeout. The action names mirror
what serving engines are proposing (keep / neutral-offload / discard with a cache TTL).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

Action = Literal["keep", "offload", "drop"]


@dataclass(frozen=True)
class HintCosts:
    breakeven_s: float = 30.0
    offload_cost_s: float = 8.0
    offload_hold_ratio: float = 0.05
    min_ttl_ms: float = 100.0

    def __post_init__(self) -> None:
        if self.breakeven_s <= 0 or self.offload_cost_s < 0 or not 0 <= self.offload_hold_ratio < 1:
            raise ValueError("hint costs: breakeven_s > 0, offload_cost_s >= 0, 0 <= offload_hold_ratio < 1")


@dataclass(frozen=True)
class Hint:
    action: Action
    ttl_ms: float


def decide(levels, values_ms, costs: HintCosts = HintCosts()) -> Hint:
    """The hint for one gap, from its predicted quantiles (levels in (0,1), values in ms, ascending)."""
    actions, ttl = decide_batch(levels, np.asarray(values_ms, dtype=np.float64)[None, :], costs)
    return Hint(actions[0], float(ttl[0]))


def decide_batch(levels, values_ms: np.ndarray, costs: HintCosts = HintCosts()) -> tuple[list[str], np.ndarray]:
    """Hints for many gaps at once (rows of ``values_ms``): actions and TTLs in ms.

    Mass between two predicted levels sits at the upper value; the tail above the top level at
    twice the top value.
    """
    levels = np.asarray(levels, dtype=np.float64)
    v = np.maximum(np.asarray(values_ms, dtype=np.float64), 0.0) / 1000.0     # (n, q)
    n, q = v.shape
    edges = np.concatenate([[0.0], levels, [1.0]])
    probs = np.diff(edges)                                                     # (q+1,)
    support = np.concatenate([v, v[:, -1:] * 2.0], axis=1)                     # (n, q+1)
    mean = support @ probs
    keep = np.empty((n, q))
    for j in range(q):
        t = v[:, j:j + 1]
        keep[:, j] = (np.minimum(support, t) * probs).sum(axis=1) + costs.breakeven_s * ((support > t) * probs).sum(axis=1)
    best = keep.argmin(axis=1)
    best_keep = keep[np.arange(n), best]
    offload = costs.offload_cost_s + costs.offload_hold_ratio * mean
    drop = np.full(n, costs.breakeven_s)
    stacked = np.stack([best_keep, offload, drop], axis=1)
    choice = stacked.argmin(axis=1)
    actions = np.array(["keep", "offload", "drop"])[choice].tolist()
    ttl = np.where(choice == 0, np.maximum(v[np.arange(n), best] * 1000.0, costs.min_ttl_ms),
                   np.where(choice == 1, np.maximum(v[:, -1] * 1000.0, costs.min_ttl_ms), 0.0))
    return actions, ttl
