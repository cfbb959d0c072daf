"""The shared-pool KV replay (toollat/simulation/pool.py): hand-made multi-session timelines
against hit counts worked out by hand, Belady as a bound, monotone curves, and bad input
reported rather than fatal (on real sessions of the shared corpus)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from toollat.simulation.gaps import build_gaps
from toollat.simulation.pool import (LRU, Belady, Predicted, StaticTTL, Timeline, default_pools,
                                     disambiguate_sessions, gap_closed, replay, run_pools)

# Pool of 2 blocks (32 tokens); every context is one block. A pauses twice, B once (long), C once.
#   t=0 A pauses (resumes 3)   t=1 B pauses (resumes 10)   t=2 C pauses (resumes 5): 3 blocks > 2
#   t=3 A resumes and is active   t=4 A pauses (resumes 6)   t=5 C resumes   t=6 A   t=10 B
TL = Timeline.of([("A", 0, 3, 16), ("A", 4, 6, 16), ("B", 1, 10, 16), ("C", 2, 5, 16)])
POOL = 32
# Rows are sorted by stream then start: A@0, A@4, B, C.
SHORT, LONG, MID = [1e3, 2e3, 3e3, 4e3], [5e3, 8e3, 9e3, 10e3], [10e3, 20e3, 30e3, 40e3]


def test_lru_by_hand():
    # t=2 evicts A (paused first): A misses at 3; A active again at 3 needs a block: evicts B
    # (paused before C); C hits at 5, A at 6, B misses at 10: 2 hits of 4.
    r = replay(TL, LRU(), POOL)
    assert r["hit_rate"] == pytest.approx(2 / 4)
    assert (r["reprefill_tokens"], r["evictions"], r["resumed_tokens"]) == (32.0, 2, 64.0)
    assert r["prefill_amplification"] == pytest.approx((48 + 32) / 48)   # three first contexts are fresh


def test_belady_by_hand():
    # t=2 evicts B (resumes furthest, at 10); A, C and A hit; B misses: 3 of 4.
    r = replay(TL, Belady(), POOL)
    assert r["hit_rate"] == pytest.approx(3 / 4) and r["evictions"] == 1


def test_priority_rule_by_hand():
    # Right predictions: at t=2 the expected resumes are A 0 + E[G | G > 2 s] = 3.28 (the 1 s and
    # 2 s points have passed: (.4*3 + .09*4 + .01*8) / .5), B 1 + 8.4, C 2 + 2.54: B is evicted.
    good = Predicted("good", np.array([SHORT, SHORT, LONG, SHORT]), hints=False, rule="mean")
    assert replay(TL, good, POOL)["hit_rate"] == pytest.approx(3 / 4)
    # Wrong predictions (A long, B short): t=2: A 25.4, B 1 + 2.71, C 2 + 8.4: A is evicted and
    # misses; at t=3 B (1 + 3.28) and C (10.4) are paused: C is evicted and misses; A and B hit.
    bad = Predicted("bad", np.array([MID, MID, SHORT, LONG]), hints=False, rule="mean")
    r = replay(TL, bad, POOL)
    assert r["hit_rate"] == pytest.approx(2 / 4) and r["evictions"] == 2
    # The index rule orders these the same way here ...
    assert replay(TL, Predicted("i", np.array([SHORT, SHORT, LONG, SHORT]), hints=False), POOL)["hit_rate"] == pytest.approx(3 / 4)
    # ... and is never above the conditional mean: holding to the end is one of its horizons
    # (SHORT at a = 0: to the end 2.54 s per hit; to 4 s, (.1*1 + .4*2 + .4*3 + .1*4) / .99 = 2.525)
    p = Predicted("i", np.array([SHORT]), hints=False)
    assert (p.index <= p.cond_mean - np.r_[0, p.support[0, :-1]] + 1e-9).all()
    assert p.index[0, 0] == pytest.approx(2.5 / 0.99)


def test_hint_demotes_and_keys_change_with_time():
    # With hints, "drop" entries are evicted before kept ones whatever their expected resume.
    q = np.array([SHORT, SHORT, [1e6, 2e6, 4e6, 8e6], SHORT])          # B: hours -> drop
    p = Predicted("hinted", q)
    assert p.action.tolist() == [0, 0, 2, 0]
    assert replay(TL, p, POOL)["hit_rate"] == pytest.approx(3 / 4)
    # A static TTL of 1.5 s: at t=2 A (waited 2 s) is past it, B and C are not: A is evicted
    # (as LRU); at t=3 B has waited 2 s, C 1 s: B is evicted. Same as LRU here.
    assert replay(TL, StaticTTL(1.5), POOL)["hit_rate"] == pytest.approx(2 / 4)
    # TTL 2.5: at t=3 C is still protected but B is not: B goes; same count, by another path.
    assert replay(TL, StaticTTL(2.5), POOL)["evictions"] == 2


def _random_timeline(rng, streams=6, pauses=8):
    rows = []
    for s in range(streams):
        t = rng.uniform(0, 20)
        tok = rng.integers(1, 40) * 16
        for _ in range(pauses):
            gap = float(rng.choice([rng.uniform(0, 2), rng.uniform(5, 60)]))
            rows.append((f"s{s}", t, t + gap, float(tok)))
            t += gap + rng.uniform(0.1, 5)
            tok += int(rng.integers(0, 8)) * 16
    return Timeline.of(rows)


def test_belady_bounds_every_policy_and_curves_are_monotone():
    rng = np.random.default_rng(7)
    for trial in range(6):
        tl = _random_timeline(rng)
        q = np.sort(10 ** rng.uniform(2, 5, size=(len(tl), 4)), axis=1)
        pols = [LRU(), StaticTTL(3), Predicted("toollat", q), Predicted("noisy", q[::-1].copy()), Belady()]
        pools = default_pools(tl, (0.05, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0))
        res = run_pools(tl, pols, pools)
        hit = {n: np.array([r["hit_rate"] for r in rows]) for n, rows in res.policies.items()}
        for n, h in hit.items():
            assert (h <= hit["belady"] + 1e-12).all(), (trial, n, h, hit["belady"])
        for n in ("lru", "belady"):
            assert (np.diff(hit[n]) >= -1e-12).all(), (trial, n, hit[n])
        assert hit["belady"][-1] == pytest.approx(1.0)    # everything fits at the peak demand


def test_gap_closed_uses_only_pools_where_belady_beats_lru():
    pol = {"lru": [{"hit_rate": 0.5}, {"hit_rate": 0.9}], "belady": [{"hit_rate": 0.7}, {"hit_rate": 0.91}],
           "toollat": [{"hit_rate": 0.6}, {"hit_rate": 0.2}]}
    assert gap_closed(pol, "toollat") == pytest.approx(0.5)     # the second pool differs by 0.01 only
    pol["belady"][0]["hit_rate"] = 0.51
    assert gap_closed(pol, "toollat") is None


def test_timeline_rejects_broken_rows_clearly():
    with pytest.raises(ValueError, match="ends before it starts"):
        Timeline.of([("A", 5, 3, 16)])
    with pytest.raises(ValueError, match="tokens must be finite"):
        Timeline.of([("A", 0, 3, float("nan"))])
    with pytest.raises(ValueError, match="pool_tokens must be > 0"):
        replay(TL, LRU(), 0)


def test_pool_smaller_than_one_context_is_counted_not_fatal():
    tl = Timeline.of([("A", 0, 3, 160), ("A", 4, 6, 160), ("B", 1, 2, 16), ("B", 2.5, 5, 16)])
    r = replay(tl, Belady(), 64)          # A's 10 blocks never fit in 4
    assert r["requests_larger_than_pool"] == 2 and r["overcommitted_events"] > 0
    assert r["hit_rate"] is not None and 0 <= r["hit_rate"] <= 1
    json.dumps(r, allow_nan=False)


@pytest.fixture(scope="module")
def real_calls(small_calls):
    """About 30 real Claude Code and Codex sessions of the shared corpus."""
    keep = small_calls["session_id"].drop_duplicates().iloc[::4]
    return small_calls[small_calls["session_id"].isin(keep)].reset_index(drop=True)


def test_real_sessions_bad_input_reported(real_calls):
    df = real_calls.copy()
    sids = df["session_id"].drop_duplicates().tolist()
    # a session without token counts, a single-call session, two sessions sharing an id
    df.loc[df["session_id"] == sids[0], "context_tokens"] = None
    single = df[df["session_id"] == sids[1]].iloc[:1]
    df = df[df["session_id"] != sids[1]]
    twin = df[df["session_id"] == sids[2]].assign(source="elsewhere", call_id=lambda d: d["call_id"] + "-twin")
    df = pd.concat([df, single, twin], ignore_index=True)
    df, shared = disambiguate_sessions(df)
    assert shared == 1
    gaps = build_gaps(df)
    assert gaps.report.sessions_without_tokens == 1 and gaps.report.single_call_sessions == 1
    tl = Timeline.from_gaps(gaps.frame, concurrency=8)
    assert tl.report["concurrency"] == 8 and len(tl) >= len(gaps.frame)
    pools = default_pools(tl) + [16]        # 16 tokens: smaller than every context
    res = run_pools(tl, [LRU(), StaticTTL(300), Belady()], sorted(set(pools)))
    out = json.dumps(res.to_dict(), allow_nan=False)
    assert "gap_closed_vs_lru" in out
    lru, bel = ([r["hit_rate"] for r in res.policies[n]] for n in ("lru", "belady"))
    # Belady is exact for block hits while paused KV competes for the pool; below one context
    # (active KV alone overcommits it) whole requests arrive at once and it is only nearly so.
    for n, l, b in zip(res.pools, lru, bel):
        # (exact in blocks; in tokens, up to the partial last block of a context)
        assert l <= b + (1e-6 if n >= tl.tokens.max() else 1e-4), (n, l, b)
    assert all(np.diff(lru) >= -1e-12) and all(np.diff(bel) >= -1e-12)
    assert res.policies["lru"][0]["requests_larger_than_pool"] == len(tl)


def test_packing_reaches_the_concurrency(real_calls):
    gaps = build_gaps(real_calls)
    loose = Timeline.from_gaps(gaps.frame)
    packed = Timeline.from_gaps(gaps.frame, concurrency=4)
    # every session keeps its own timeline (one shift per session) ...
    for tl in (loose, packed):
        assert (tl.end >= tl.start).all()
    d = pd.DataFrame({"s": packed.session, "shift": packed.start - loose.start})
    assert (d.groupby("s")["shift"].nunique() == 1).all()
    # ... and while sessions are still waiting for a lane, 4 are live whenever one starts
    span = pd.DataFrame({"s": packed.session, "a": packed.start, "b": packed.end}).groupby("s").agg(a=("a", "min"), b=("b", "max"))
    starts = np.sort(span["a"].to_numpy())[: len(span) - 4]
    live = [int(((span["a"] <= t) & (span["b"] > t)).sum()) for t in starts]
    assert np.median(live) == 4 and min(live) >= 3
    assert packed.report["span_s"] < loose.end.max() - loose.start.min()
