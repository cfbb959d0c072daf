"""The KV-cache hint policy, against costs worked out by hand (toollat/hints.py)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import decide
from toollat.hints import HintCosts, decide_plans, plan_costs

L = (0.1, 0.5, 0.9, 0.99)
C = HintCosts(breakeven_s=30, offload_cost_s=8, offload_hold_ratio=0.05)  # host holds at most 600 s


def test_short_call_keeps_then_offloads():
    # [1,2,3,4] s: keep 4 then offload = 2.5 + .01*(8 + .05*4) = 2.582 (cheapest, see test_simulation)
    h = decide(L, [1000, 2000, 3000, 4000], C)
    assert (h.action, h.ttl_ms, h.then) == ("keep", 4000.0, "offload")


def test_minutes_offload_and_hours_drop():
    assert decide(L, [30e3, 60e3, 120e3, 300e3], C).action == "offload"      # 13.4 < drop 30
    h = decide(L, [30e3, 60e3, 120e3, 300e3], C)
    assert h.ttl_ms == 600_000.0 and h.then is None                          # host TTL B/r
    assert decide(L, [1e6, 2e6, 4e6, 8e6], C) .action == "drop"               # every outcome outlives host memory


def test_without_offload_tier_keep_then_drop():
    no_offload = HintCosts(breakeven_s=30, offload_cost_s=1e9, offload_hold_ratio=0.05)
    h = decide(L, [1000, 2000, 3000, 4000], no_offload)
    assert (h.action, h.ttl_ms, h.then) == ("keep", 4000.0, "drop")          # 2.5 + 30*.01 = 2.8


def test_min_ttl_and_batch_agree_with_single():
    rng = np.random.default_rng(0)
    q = np.sort(10 ** rng.uniform(0, 7, size=(200, 4)), axis=1)
    actions, ttl, then = decide_plans(L, q, C)
    for i in range(0, 200, 17):
        h = decide(L, q[i], C)
        assert (h.action, h.ttl_ms, h.then) == (actions[i], ttl[i], then[i])
    assert all(t >= C.min_ttl_ms for a, t in zip(actions, ttl) if a == "keep")


def test_costlier_reprefill_never_drops_more():
    rng = np.random.default_rng(1)
    q = np.sort(10 ** rng.uniform(1, 7, size=(300, 4)), axis=1)
    drops = [sum(a == "drop" for a in decide_plans(L, q, HintCosts(breakeven_s=b, offload_cost_s=8, offload_hold_ratio=0.05))[0])
             for b in (10, 30, 100, 1000)]
    assert drops == sorted(drops, reverse=True) and drops[0] > drops[-1]
    # A re-prefill that costs almost nothing: dropping is always cheapest.
    assert set(decide_plans(L, q, HintCosts(breakeven_s=1e-3, offload_cost_s=8, offload_hold_ratio=0.05))[0]) == {"drop"}


def test_bad_costs_are_refused():
    for bad in ({"breakeven_s": 0}, {"offload_cost_s": -1}, {"offload_hold_ratio": 1.5}):
        with pytest.raises(ValueError):
            HintCosts(**bad)


def test_plan_costs_explain_the_hint_by_hand():
    # gaps 1, 2, 3, 4 s and the tail at 8 s, with masses .1 .4 .4 .09 .01 (E[G] = 2.54 s)
    c = plan_costs(L, np.array([[1000, 2000, 3000, 4000]]), C)[0]
    assert c["unit"] == "gpu_hold_s" and c["chosen"] == "keep"
    assert c["keep"] == pytest.approx(2.5 + 0.01 * (8 + 0.05 * 4))       # hold min(G, 4); the 8 s tail offloaded
    assert (c["keep_ttl_ms"], c["keep_then"]) == (4000.0, "offload")
    assert c["offload"] == pytest.approx(8 + 0.05 * 2.54)                 # every outcome pays the round trip
    assert c["drop"] == pytest.approx(30.0)


def test_plan_costs_agree_with_the_hint():
    rng = np.random.default_rng(3)
    q = np.sort(10 ** rng.uniform(0, 7, size=(300, 4)), axis=1)
    actions, ttl, then = decide_plans(L, q, C)
    for c, a, t, th in zip(plan_costs(L, q, C), actions, ttl, then):
        assert c["chosen"] == a and min(c["keep"], c["offload"], c["drop"]) == c[a]
        if a == "keep":
            assert (c["keep_ttl_ms"], c["keep_then"]) == (t, th)
