"""A serving call takes one-row paths through the hint rule, the duration bounds, the long-call
probability and the neighbour memory (numbers instead of arrays: the array versions cost more in
overhead than in arithmetic at that size). Each must give what its batch version gives."""
from __future__ import annotations

import numpy as np
import pytest

from toollat.hints import HintCosts, decide_plans
from toollat.models.lgbm import exceedance_quantiles, exceedance_quantiles_one
from toollat.models.bounds import COLUMNS, DurationBounds
from toollat.core.units import p_exceeds

L = (0.1, 0.5, 0.9, 0.99)
COSTS = [HintCosts(), HintCosts(breakeven_s=5, offload_cost_s=0, offload_hold_ratio=0),
         HintCosts(breakeven_s=300, offload_cost_s=20, offload_hold_ratio=0.2)]


def _quantiles(n: int, seed: int) -> np.ndarray:
    rng = np.random.RandomState(seed)
    q = np.sort(10 ** rng.uniform(0, 7, size=(n, len(L))), axis=1)
    q[::7, 1] = q[::7, 0]           # ties: equal quantiles (bounds clamp to them)
    q[::11, 3] = q[::11, 2]
    q[::13] = 0.0                   # a zero distribution
    return q


@pytest.mark.parametrize("costs", COSTS)
def test_hint_of_one_gap_equals_the_batch_rule(costs):
    q = _quantiles(5000, 1)
    actions, ttl, then = decide_plans(L, q, costs)
    for i in range(len(q)):
        a, t, h = decide_plans(L, q[i:i + 1], costs)
        assert (a[0], h[0]) == (actions[i], then[i]), i
        assert t[0] == pytest.approx(ttl[i], rel=1e-12), i


@pytest.mark.parametrize("with_p", [False, True])
def test_long_probability_of_one_call_equals_the_batch(with_p):
    q = _quantiles(5000, 2)
    p = np.random.RandomState(3).uniform(0, 1, len(q)) if with_p else None
    batch = p_exceeds(L, q, 60_000.0, p)
    one = [p_exceeds(L, q[i:i + 1], 60_000.0, None if p is None else p[i:i + 1])[0] for i in range(len(q))]
    assert np.array_equal(np.array(one), batch)


@pytest.mark.parametrize("how", ["interp", "clip", "none"])
def test_exceedance_quantiles_of_one_call_equal_the_batch(how):
    """The exceedance classifiers' bound on the quantiles (issue 19), one row in Python floats."""
    q = np.log10(_quantiles(5000, 7) / 1000.0 + 1e-3)
    t = np.log10([10.0, 30.0, 60.0, 300.0])
    rng = np.random.RandomState(8)
    p = rng.uniform(0, 1, (len(q), len(t))) ** 3
    p[::5, 1] = p[::5, 0]            # ties between thresholds' probabilities
    p[::9] = 0.0
    p[::10, 2] = 1.0
    batch = exceedance_quantiles(L, q, t, p, how)
    if how != "none":
        assert (batch != q).any()    # the bound moves some
    for i in range(len(q)):
        one = exceedance_quantiles_one(L, q[i].tolist(), t.tolist(), p[i].tolist(), how)
        assert np.array_equal(np.array(one), batch[i]), i


def test_duration_bounds_of_one_call_equal_the_batch():
    rng = np.random.RandomState(4)
    names = ["c_tool", *COLUMNS, "x"]
    X = rng.choice([np.nan, 0, 1, 5, 25, 40, np.inf], size=(3000, len(names))).astype(np.float32)
    tools = rng.choice(["Bash", "exec_command", "write_stdin", "Read", "bash"], len(X))
    b = DurationBounds()
    lo, hi = b.limits(tools, X, names)
    q = np.log10(_quantiles(len(X), 5) / 1000.0 + 1e-3)
    both = b.apply(L, q, lo, hi)
    for i in range(len(X)):
        l1, h1 = b.limits(tools[i:i + 1], X[i:i + 1], names)
        assert (l1[0], h1[0]) == (lo[i], hi[i]), i
        assert np.array_equal(b.apply(L, q[i:i + 1], l1, h1)[0], both[i]), i


def test_memory_query_of_one_vector_equals_a_batch_and_brute_force(small_bundle):
    """A serving call's memory query (one vector) gives a batch's numbers to the last bit, in
    any batch, and the k nearest it summarizes are the brute-force float64 nearest: the float32
    screen loses none of them (memory entries, entries perturbed, random directions)."""
    from toollat.estimator import ToolLatencyModel
    from toollat.features.memory import EXACT_SIM, MEMORY_FEATURES

    mem = ToolLatencyModel.load(small_bundle).pipeline_.memory
    rng = np.random.RandomState(6)
    pick = rng.choice(len(mem), min(300, len(mem)), replace=False)
    qs = np.vstack([mem.vecs[pick], mem.vecs[pick] + 0.02 * rng.randn(len(pick), mem.vecs.shape[1]),
                    rng.randn(100, mem.vecs.shape[1])]).astype(np.float64)
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    batch = mem.query(qs)
    in_sevens = np.vstack([mem.query(qs[i:i + 7]) for i in range(0, len(qs), 7)])
    one = np.vstack([mem.query(q[None, :]) for q in qs])
    assert one.shape == (len(qs), len(MEMORY_FEATURES))
    assert np.array_equal(one, batch, equal_nan=True) and np.array_equal(in_sevens, batch, equal_nan=True)

    brute = qs @ mem.vecs.astype(np.float64).T          # every entry's similarity in float64
    k = min(mem.k, len(mem))
    for row, sims in zip(one, brute):
        nearest = np.sort(sims)[::-1][:k]
        assert row[0] == pytest.approx(nearest[0], abs=1e-12)            # m_sim1
        assert row[8] == pytest.approx(nearest.mean(), abs=1e-12)        # m_knn_sim: the k nearest, none lost
        assert np.isnan(row[4]) == (nearest[0] < EXACT_SIM)                # m_exact_y only for an exact match
