"""The shared pool with a host tier (toollat/simulation/pool.py): write-back, the admission rule
(drop = lowest priority, refused only under host pressure), prefetch early / on time / late /
denied, and the resume-stall arithmetic, each against figures worked out by hand; the pool
settings (conf/pool) read strictly and with overrides."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from toollat.simulation.pool import (LRU, Belady, ContinuumTTL, Predicted, Timeline, live_pools, replay,
                                     run_pools, stall_gap_closed)
from toollat.simulation.resume import PoolConfig, ResumeCosts

# 1 block (16 tokens) loads in 1 s; a re-prefill runs at 4 tokens/s (a block in 4 s).
SLOW = ResumeCosts(kv_bytes_per_token=62_500_000, host_gb_s=1.0, prefill_tokens_per_s=4.0)

# From tests/test_pool.py: pool of 2 blocks; every context one block. Rows: A@0 (0-3), A@4 (4-6), B (1-10), C (2-5).
TL = Timeline.of([("A", 0, 3, 16), ("A", 4, 6, 16), ("B", 1, 10, 16), ("C", 2, 5, 16)])
SHORT, LONG, HOURS = [1e3, 2e3, 3e3, 4e3], [5e3, 8e3, 9e3, 10e3], [1e6, 2e6, 4e6, 8e6]


def test_stall_arithmetic():
    # H100 + Llama-3-8B figures: 131,072 bytes/token over 64 GB/s = 488,281.25 tokens/s
    c = ResumeCosts(kv_bytes_per_token=131072, host_gb_s=64.0, prefill_tokens_per_s=10000.0)
    assert c.host_tokens_per_s == pytest.approx(488281.25)
    assert c.stall_s(488281.25, 10000) == pytest.approx(2.0)          # 1 s of load + 1 s of prefill
    assert c.load_s(131072) == pytest.approx(131072 / 488281.25)
    assert SLOW.host_tokens_per_s == pytest.approx(16.0)
    with pytest.raises(ValueError, match="host_gb_s must be a finite number > 0"):
        ResumeCosts(kv_bytes_per_token=1, host_gb_s=0, prefill_tokens_per_s=1)


def test_gpu_only_stall_is_the_reprefill():
    # lru misses A@3 and B@10 (test_pool): 2 x 16 tokens at 4 tokens/s = 4 s each, over 4 resumes
    r = replay(TL, LRU(), 32, 64, resume=SLOW)               # lru ignores the host tier
    assert r["hit_rate"] == pytest.approx(0.5) and r["gpu_host_hit_rate"] == pytest.approx(0.5)
    assert r["stall_mean_s"] == pytest.approx(2.0) and r["stall_total_s"] == pytest.approx(8.0)
    assert r["host_traffic_tokens"] == 0
    assert replay(TL, LRU(), 32)["stall_mean_s"] is None      # no resume costs: no stall


def test_write_back_by_hand():
    # lru+host, host tier 2 blocks: t=2 A (oldest) goes to host; t=3 A loads back (1 s) and, active
    # again, pushes B to host; C and A@6 hit on the GPU; B@10 loads back (1 s).
    r = replay(TL, LRU(host=True), 32, 32, resume=SLOW)
    assert r["hit_rate"] == pytest.approx(0.5) and r["host_hit_rate"] == pytest.approx(0.5)
    assert r["gpu_host_hit_rate"] == pytest.approx(1.0) and r["reprefill_tokens"] == 0
    assert r["stall_total_s"] == pytest.approx(2.0) and r["stall_mean_s"] == pytest.approx(0.5)
    assert r["stall_p95_s"] == pytest.approx(1.0)
    assert r["host_traffic_tokens"] == 64                      # 2 blocks written, 2 loaded
    assert r["stall_total_s_by_kind"] == {"tool": pytest.approx(2.0)}
    # a host tier of half a block holds nothing: the same misses as GPU only
    assert replay(TL, LRU(host=True), 32, 8, resume=SLOW)["stall_total_s"] == pytest.approx(8.0)


# X pauses 0-10, Z 1-11, Y 2-12, one block each; GPU 1 block. X predicted short (keep), Z a few
# seconds (keep, ranks after X), Y hours (drop: demoted, lowest priority).
ADMIT = Timeline.of([("X", 0, 10, 16), ("Z", 1, 11, 16), ("Y", 2, 12, 16)])
ADMIT_Q = np.array([SHORT, HOURS, LONG])                      # rows by stream name: X, Y, Z


def test_drop_goes_to_host_when_there_is_room():
    # (no resume costs: nothing is prefetched, the tiers alone)
    p = Predicted("toollat", ADMIT_Q)
    assert p.action.tolist() == [0, 2, 0]                       # X keep, Y drop, Z keep
    # host 2 blocks: t=1 Z goes to host, t=2 Y (drop) too: nothing is refused, nothing re-prefilled
    r = replay(ADMIT, p, 16, 32)
    assert r["host_refused_tokens"] == 0 and r["gpu_host_hit_rate"] == pytest.approx(1.0)
    assert r["hit_rate"] == pytest.approx(1 / 3) and r["reprefill_tokens"] == 0


def test_drop_is_refused_only_under_host_pressure():
    # host 1 block, holding Z (keep) when Y (drop) is evicted at t=2: Y ranks after Z, so the
    # copy is refused; X hits on the GPU, Z comes from host, Y is re-prefilled.
    r = replay(ADMIT, Predicted("toollat", ADMIT_Q), 16, 16)
    assert r["host_refused_tokens"] == 16 and r["reprefill_tokens"] == 16
    assert (r["hit_rate"], r["host_hit_rate"]) == (pytest.approx(1 / 3), pytest.approx(1 / 3))
    # lru+host under the same pressure: t=1 X (oldest) to host, t=2 Z evicted and admitted by
    # evicting X's copy (it ranks after Z: paused earlier); X re-prefilled, Z from host, Y hits
    r = replay(ADMIT, LRU(host=True), 16, 16)
    assert r["host_refused_tokens"] == 0 and r["reprefill_tokens"] == 16
    assert (r["hit_rate"], r["host_hit_rate"]) == (pytest.approx(1 / 3), pytest.approx(1 / 3))


class AtFixed(Belady):
    """Belady's order; loads an entry back ``after`` seconds after its pause (test policy)."""

    def __init__(self, after: float) -> None:
        super().__init__()
        self.after = after

    def prefetch_at(self, i, t, load_s, victim_s, tl):
        return float(tl.start[i]) + self.after


# B pauses 0-1 (2 blocks) and 2-10 (3 blocks, its last); A pauses 0.5-40 (2 blocks). GPU 4 blocks,
# host 4. t=2: B's growth overfills the pool: A (resumes furthest) loses its tail block to host.
# t=10: B finishes and frees its blocks. A's host block (16 tokens) loads in 1 s.
PF = Timeline.of([("A", 0.5, 40, 32), ("B", 0, 1, 32), ("B", 2, 10, 48)])


@pytest.mark.parametrize("after, stall, wasted, late, gpu_tokens", [
    (19.5, 0.0, 16 * 19.0, 0, 32),      # early: loaded at t=21, waits 19 s for the resume
    (38.5, 0.0, 0.0, 0, 32),            # on time: loaded exactly at the resume (t=40)
    (39.0, 0.5, 0.0, 1, 24),            # late: at t=40 half the block is loaded, the rest stalls 0.5 s
])
def test_prefetch_early_on_time_late(after, stall, wasted, late, gpu_tokens):
    r = replay(PF, AtFixed(after), 64, 64, resume=SLOW)
    assert r["prefetches"] == 1 and r["prefetch_tokens"] == 16 and r["prefetch_late"] == late
    assert r["stall_total_s"] == pytest.approx(stall)
    assert r["prefetch_wasted_token_s"] == pytest.approx(wasted)
    assert r["gpu_hit_tokens"] == pytest.approx(32 + 48 + gpu_tokens)   # B's two resumes hit
    assert r["host_hit_rate"] * r["resumed_tokens"] == pytest.approx(32 - gpu_tokens)
    assert r["host_traffic_tokens"] == 32                               # one block written, one loaded


def test_prefetch_without_room_is_denied_and_the_oracle_is_on_time():
    # at t=5.5 the pool holds A's block and B's three: no room, and the only other paused entry
    # (B, resuming at 10) ranks before A, so the load is denied; A loads on resume (1 s)
    r = replay(PF, AtFixed(5.0), 64, 64, resume=SLOW)
    assert (r["prefetches"], r["prefetch_denied"]) == (0, 1) and r["stall_total_s"] == pytest.approx(1.0)
    # Belady itself loads at the true resume minus the load time: no stall, no waste
    r = replay(PF, Belady(), 64, 64, resume=SLOW)
    assert r["prefetches"] == 1 and r["stall_total_s"] == 0.0 and r["prefetch_wasted_token_s"] == 0.0
    # the engine default loads nothing early
    assert replay(PF, LRU(host=True), 64, 64, resume=SLOW)["stall_total_s"] == pytest.approx(1.0)


def test_prefetch_rule_by_hand():
    # quantiles 1, 2, 3, 4 s: support 1, 2, 3, 4, 8 s with mass .1 .4 .4 .09 .01; load L = 0.5 s
    p = Predicted("toollat", np.array([SHORT]))
    tl = Timeline.of([("A", 0, 3, 16)])
    # free room (V infinite): loading now costs nothing and the earliest return waits 0: now
    assert p.prefetch_at(0, 0.0, 0.5, math.inf, tl) == 0.0
    # V = 10 s: now costs 0.5 * E[min(1, G / 10)] = 0.127; at 1 - L = 0.5 s, 0.5 * E[(G - 0.5) / 10] = 0.102;
    # at 1.5 s the 1 s return stalls: 0.05 + 0.0545; later is dearer: start at 0.5 s
    assert p.prefetch_at(0, 0.0, 0.5, 10.0, tl) == pytest.approx(0.5)
    # past the whole support there is nothing to go on: never
    assert p.prefetch_at(0, 9.0, 0.5, 10.0, tl) == math.inf
    # V = 0.01 s (the victim returns at once): every early load costs its whole L: look again at
    # the next support point
    assert p.prefetch_at(0, 0.0, 0.5, 0.01, tl) == pytest.approx(1.0)


def test_continuum_ttl_pins_for_the_running_mean():
    # tool t: A 0-3 (3 s); tool q: D 1-1 (0 s). Then B (t) pauses at 5: pinned 3 s, until 8; C (q)
    # at 6: pinned 0 s. Nothing had ended when A and D paused: no pin.
    tl = Timeline.of([("A", 0, 3, 16, "t"), ("B", 5, 9, 16, "t"), ("C", 6, 20, 16, "q"), ("D", 1, 1, 16, "q")])
    p = ContinuumTTL()
    replay(tl, p, 1000)
    assert p.ttl.tolist() == [0.0, 3.0, 0.0, 0.0]
    # at t=6 B is still pinned and C is not: C is evicted first, where LRU evicts B (paused earlier)
    assert p.key(2, 6.0, 6.0, tl)[0] > p.key(1, 5.0, 6.0, tl)[0]
    assert LRU().key(1, 5.0, 6.0, tl)[0] > LRU().key(2, 6.0, 6.0, tl)[0]
    # at t=8 B's pin ends: both demoted, LRU among them
    assert p.key(1, 5.0, 8.0, tl)[0] > p.key(2, 6.0, 8.0, tl)[0]
    # a second replay starts afresh (the same pins, not a mean over both replays)
    replay(tl, p, 16)
    assert p.ttl.tolist() == [0.0, 3.0, 0.0, 0.0]


def test_stall_gap_closed_and_headline():
    pol = {"lru+host": [{"stall_mean_s": 4.0}], "belady": [{"stall_mean_s": 1.0}],
           "toollat": [{"stall_mean_s": 2.5}], "per_tool": [{"stall_mean_s": 5.0}]}
    assert stall_gap_closed(pol, "toollat", 0) == pytest.approx(0.5)
    assert stall_gap_closed(pol, "per_tool", 0) == pytest.approx(-1 / 3)
    pol["belady"][0]["stall_mean_s"] = 4.0
    assert stall_gap_closed(pol, "toollat", 0) is None
    res = run_pools(TL, [LRU(), LRU(host=True), Predicted("toollat", np.array([SHORT, SHORT, LONG, SHORT])), Belady()],
                    [32, 48], [64, 96], resume=SLOW)
    h = res.headline
    assert h["middle_pool"] == 48 and res.host_tokens == [64, 96]
    assert {"stall_gap_closed", "toollat_gpu_host_hit_at_or_above_lru_host_everywhere", "stall_mean_s_middle"} <= set(h)
    assert res.policies["lru"][0]["host_tokens"] == 0          # lru is GPU only
    json.dumps(res.to_dict(), allow_nan=False)


def test_live_kv_and_pools():
    # Held: A 16 tokens from 0 to 6, B 16 from 1 to 10, C 16 from 2 to 5. The demand right after
    # each pause: A@0 16, B@1 32, C@2 48, A@4 48: median 40; the peak 48.
    assert TL.live_kv_tokens() == pytest.approx(40.0)
    assert TL.peak_demand_tokens() == pytest.approx(48.0)
    # live / 2 = 20 tokens -> 1 block; live / 1 = 40 -> 2.5 blocks, rounded to 2 (half to even)
    assert live_pools(TL, [2.0, 1.0]) == [16, 32]


def test_pool_config_is_strict_and_overridable(tmp_path):
    cfg = PoolConfig.load()
    assert cfg.resume.kv_bytes_per_token == 131072 and cfg.resume.source.startswith("https://")
    assert cfg.live_over_pool[len(cfg.live_over_pool) // 2] == 1.5 and cfg.host_ratio > 1
    o = cfg.with_overrides(host_gb_s=128.0, concurrency=8, prefill_tokens_per_s=None)
    assert o.resume.host_gb_s == 128.0 and o.concurrency == 8 and o.resume.prefill_tokens_per_s == cfg.resume.prefill_tokens_per_s
    with pytest.raises(ValueError, match="concurrency must be an integer >= 1"):
        cfg.with_overrides(concurrency=0)
    bad = tmp_path / "pool.yaml"
    bad.write_text("concurrency: 4\nbogus: 1\n")
    with pytest.raises(ValueError, match="unknown settings \\['bogus'\\]"):
        PoolConfig.load(bad)
    bad.write_text("concurrency: 4\n")
    with pytest.raises(ValueError, match="missing settings"):
        PoolConfig.load(bad)
    with pytest.raises(ValueError, match="not found"):
        PoolConfig.load(tmp_path / "nope.yaml")


def test_recency_order_is_lru_with_the_hint_on_top():
    # without hints, per-pause predictions in the recency order evict exactly as LRU (test_pool: 2 of 4)
    plain = Predicted("toollat", np.array([SHORT, SHORT, LONG, SHORT]), hints=False, order="recency")
    assert replay(TL, plain, 32)["hit_rate"] == pytest.approx(2 / 4)
    # with hints, B (hours: drop) is demoted: at t=2 it goes before A, the least recently paused;
    # A, C and A hit, B misses: 3 of 4
    hinted = Predicted("toollat", np.array([SHORT, SHORT, HOURS, SHORT]), order="recency")
    assert hinted.action.tolist() == [0, 0, 2, 0]
    assert replay(TL, hinted, 32)["hit_rate"] == pytest.approx(3 / 4)
    # a load counts as a use in GPU memory; host memory ranks by the pause
    hinted.begin(TL)
    assert hinted.loaded_key(0, 2.5, TL) == (0, -2.5)
    assert hinted.host_key(2, hinted.key(2, 1.0, 2.5, TL)[0], TL) == (1, -1.0)
