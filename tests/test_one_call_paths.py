"""A serving call takes one-row paths through the hint rule, the duration bounds, the long-call
probability and the neighbour memory (numbers instead of arrays: the array versions cost more in
overhead than in arithmetic at that size). Each must give what its batch version gives."""
from __future__ import annotations

import numpy as np
import pytest

from toollat.hints import HintCosts, decide_plans
from toollat.models.bounds import COLUMNS, DurationBounds
from toollat.units import p_exceeds

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


def test_memory_query_of_one_vector_equals_the_batch_code_path(small_bundle):
    """The one-row query runs the batch's operations on 1-D arrays; on every memory entry and on
    perturbed ones it answers exactly as the 2-D code did for a single row."""
    from toollat.estimator import ToolLatencyModel
    from toollat.features.memory import EXACT_SIM, MEMORY_FEATURES

    mem = ToolLatencyModel.load(small_bundle).pipeline_.memory

    def two_d(q):   # the batch code on one row
        k = min(mem.k, len(mem))
        sims = q @ mem.vecs.T
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top = np.take_along_axis(sims, idx, axis=1)
        order = np.argsort(-top, axis=1)
        idx, top = np.take_along_axis(idx, order, axis=1), np.take_along_axis(top, order, axis=1)
        n, mean, var, lng = mem.n[idx], mem.mean[idx], mem.var[idx], mem.long[idx]
        w = np.sqrt(n) * np.exp((top - top[:, :1]) / mem.temperature)
        wsum = w.sum(axis=1)
        ky = (w * mean).sum(axis=1) / wsum
        kvar = (w * (var + (mean - ky[:, None]) ** 2)).sum(axis=1) / wsum
        exact = top[:, 0] >= EXACT_SIM
        return np.stack([top[:, 0], mean[:, 0], np.log10(n[:, 0]), np.where(exact, np.log10(n[:, 0]), 0.0),
                         np.where(exact, mean[:, 0], np.nan), ky, np.sqrt(kvar), (w * lng).sum(axis=1) / wsum,
                         top.mean(axis=1)], axis=1)

    rng = np.random.RandomState(6)
    pick = rng.choice(len(mem), min(400, len(mem)), replace=False)
    qs = np.vstack([mem.vecs[pick], mem.vecs[pick] + 0.02 * rng.randn(len(pick), mem.vecs.shape[1]).astype(np.float32)])
    qs /= np.linalg.norm(qs, axis=1, keepdims=True)
    for q in qs:
        got, want = mem.query(q[None, :]), two_d(q[None, :])
        assert got.shape == (1, len(MEMORY_FEATURES))
        assert np.array_equal(got, want, equal_nan=True)
