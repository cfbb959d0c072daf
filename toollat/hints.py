"""The KV-cache hint: keep (with a TTL, then offload or drop), offload, or drop, from a
predicted gap distribution.

One documented policy, used by the Predictor, the HTTP API and the simulator. Costs are in
*GPU-hold seconds*: the cost of keeping a request's KV cache in GPU memory for one second.
Both holding and re-prefilling scale with the context size, so only ratios matter:

- ``breakeven_s`` (B): a re-prefill costs as much as holding the KV for B seconds.
- ``offload_cost_s`` (O): moving the KV to host memory and back costs O.
- ``offload_hold_ratio`` (r): holding in host memory costs r per second (r << 1). Host memory
  holds a KV at most ``H = B / r`` seconds: beyond that, holding it costs more than re-prefilling.

A hint is ``keep`` with a GPU TTL T and what to do when T expires (``then``: ``offload`` to host
memory, or ``drop``), ``offload`` now (host TTL H), or ``drop`` now. For a gap G the costs are

- keep T, then offload: ``min(G, T)`` + if G > T: ``O + r * min(G - T, H)``, + ``B`` if G > T + H
- keep T, then drop:    ``min(G, T)`` + ``B`` if G > T
- offload now is keep with T = 0 then offload; drop now costs ``B``.

The expected cost is taken over the predicted quantiles (a discrete distribution: the mass
between two levels at the upper value, the tail above the top level at twice the top value);
T ranges over 0 and the predicted quantiles; the cheapest plan wins. This is the rent-or-buy
trade-off decided per call with the predicted distribution instead of a fixed timeout, and the
keep-then-demote shape is what serving engines do when a TTL expires (the cache becomes
evictable to a lower tier); the action names mirror their proposals (keep / offload / drop).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

Action = Literal["keep", "offload", "drop"]
ACTIONS: tuple[Action, ...] = ("keep", "offload", "drop")


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
    ttl_ms: float                      # keep: GPU TTL; offload: host TTL; drop: 0
    then: Literal["offload", "drop"] | None = None   # keep only: what to do when the TTL expires

    def for_engine(self, engine: str, costs: HintCosts | None = None) -> dict:
        """This hint in a serving engine's own request fields ("vllm", "sglang", "trtllm",
        "mooncake", "dynamo"); shapes and sources in ``toollat.engines``."""
        from toollat.engines import render  # engines imports this module
        return render(self, engine, costs or HintCosts())


def decide(levels, values_ms, costs: HintCosts = HintCosts()) -> Hint:
    """The hint for one gap, from its predicted quantiles (levels in (0,1), values in ms, ascending)."""
    actions, ttl, then = decide_plans(levels, np.asarray(values_ms, dtype=np.float64)[None, :], costs)
    return Hint(actions[0], float(ttl[0]), then[0])


def _plan_costs(levels, values_ms: np.ndarray, costs: HintCosts) -> tuple[np.ndarray, np.ndarray]:
    """Expected cost (GPU-hold seconds) of every plan for many gaps at once: an array (gaps,
    candidate T, then offload | then drop) and the candidate TTLs (gaps, candidate T) in seconds,
    T = 0 first. Every plan is costed over every support point in one broadcast: arrays (gaps,
    candidate T, support point)."""
    levels = np.asarray(levels, dtype=np.float64)
    v = np.maximum(np.asarray(values_ms, dtype=np.float64), 0.0) / 1000.0     # (n, q) seconds
    n = v.shape[0]
    probs = np.diff(np.concatenate([[0.0], levels, [1.0]]))                    # (q+1,)
    b, o, r = costs.breakeven_s, costs.offload_cost_s, costs.offload_hold_ratio
    host = b / r if r > 0 else np.inf
    g = np.concatenate([v, v[:, -1:] * 2.0], axis=1)[:, None, :]               # (n, 1, q+1) support
    t = np.concatenate([np.zeros((n, 1)), v], axis=1)[:, :, None]              # (n, q+1, 1) candidate T
    late = g > t
    held = (np.minimum(g, t) * probs).sum(axis=2)                              # (n, q+1)
    off_tail = ((o + r * np.minimum(g - t, host) + b * (g > t + host)) * late * probs).sum(axis=2)
    drop_tail = b * (late * probs).sum(axis=2)
    return np.stack([held + off_tail, held + drop_tail], axis=2), t[:, :, 0]


def _decide_one(levels, values_ms, costs: HintCosts) -> tuple[str, float, str | None]:
    """``decide_plans`` for one gap, on numbers: the same costs term by term (a serving call pays
    ~30 µs for the array version's overhead at this size, a few µs here)."""
    v = [max(float(x), 0.0) / 1000.0 for x in values_ms]
    ext = [0.0, *(float(lv) for lv in levels), 1.0]
    probs = [ext[i + 1] - ext[i] for i in range(len(ext) - 1)]
    b, o, r = costs.breakeven_s, costs.offload_cost_s, costs.offload_hold_ratio
    host = b / r if r > 0 else math.inf
    support = list(zip(v + [v[-1] * 2.0], probs))
    best, best_j, best_drop = math.inf, 0, False
    for j, t in enumerate([0.0, *v]):
        held = off = late = 0.0
        for g, pr in support:
            held += min(g, t) * pr
            if g > t:
                off += (o + r * min(g - t, host) + b * (g > t + host)) * pr
                late += pr
        for then_drop, c in ((False, held + off), (True, held + b * late)):
            if c < best:
                best, best_j, best_drop = c, j, then_drop
    if best_j == 0:
        return ("drop", 0.0, None) if best_drop else ("offload", host * 1000.0, None)
    return "keep", max(v[best_j - 1] * 1000.0, costs.min_ttl_ms), "drop" if best_drop else "offload"


def decide_plans(levels, values_ms: np.ndarray, costs: HintCosts = HintCosts()) -> tuple[list[str], np.ndarray, list[str | None]]:
    """Hints for many gaps at once, vectorized: actions, TTLs in ms, and keep's ``then``."""
    if len(values_ms) == 1:
        action, ttl, then = _decide_one(levels, values_ms[0], costs)
        return [action], np.array([ttl]), [then]
    cost, t = _plan_costs(levels, values_ms, costs)
    n = cost.shape[0]
    flat = cost.reshape(n, -1).argmin(axis=1)                                  # [T, then]
    j, then_drop = flat // 2, (flat % 2) == 1
    ttl_s = t[np.arange(n), j]
    host = costs.breakeven_s / costs.offload_hold_ratio if costs.offload_hold_ratio > 0 else np.inf
    act = np.where(j == 0, np.where(then_drop, 2, 1), 0)                       # keep / offload / drop
    ttl = np.where(act == 0, np.maximum(ttl_s * 1000.0, costs.min_ttl_ms), np.where(act == 1, host * 1000.0, 0.0))
    actions = [ACTIONS[a] for a in act.tolist()]
    thens = [("drop" if d else "offload") if a == 0 else None for a, d in zip(act.tolist(), then_drop.tolist())]
    return actions, ttl, thens


def plan_costs(levels, values_ms: np.ndarray, costs: HintCosts = HintCosts()) -> list[dict]:
    """Why each hint is what it is: per gap, the expected cost in GPU-hold seconds of the cheapest
    plan of each kind, ``keep`` (its ``keep_ttl_ms`` and ``keep_then``), ``offload`` now and
    ``drop`` now, and the one ``chosen`` (the hint's action: the cheapest of the three)."""
    cost, t = _plan_costs(levels, values_ms, costs)
    n = cost.shape[0]
    keep = cost[:, 1:, :].reshape(n, -1)                                       # T > 0 only
    k = keep.argmin(axis=1)
    out = []
    for i in range(n):
        plans = {"keep": float(keep[i, k[i]]), "offload": float(cost[i, 0, 0]), "drop": float(cost[i, 0, 1])}
        # ties go as decide_plans breaks them: keep (shortest T first), then offload, then drop
        chosen = "keep" if plans["keep"] < min(plans["offload"], plans["drop"]) else \
            ("offload" if plans["offload"] <= plans["drop"] else "drop")
        out.append({"unit": "gpu_hold_s", **plans,
                    "keep_ttl_ms": float(max(t[i, 1 + k[i] // 2] * 1000.0, costs.min_ttl_ms)),
                    "keep_then": "drop" if k[i] % 2 else "offload", "chosen": chosen})
    return out
