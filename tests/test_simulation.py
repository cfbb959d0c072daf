"""KV-cache simulator: hand-made timelines checked against numbers worked out by hand below.

The main timeline (``hand_calls``), times in seconds after T0, costs B=30, O=8, r=0.05:

Session A (main agent, token counts known)
  turn 1 starts at 0 (no previous turn)
    a1 Bash  emitted 10, result 12                      tokens 1000
    a2 Read  emitted 20, result 21  } parallel group    tokens 1900
    a3 Grep  emitted 21, result 26  }                   tokens 2000
  turn 1 ends at 30; turn 2 starts at 130 (the human thinks 100 s)
    a4 Bash  emitted 140, result 200                    tokens 3000
Session C: a single call
  turn starts at 0;  c1 Read emitted 2, result 2.5      tokens 4000

Gaps (start, end, G, N, active after, lead):
  1 A tool  a1     10 -> 12    G=2    N=1000  active 21-12=9    lead 10-0=10
  2 A tool  a2+a3  21 -> 26    G=5    N=2000  active 30-26=4    (start = last emission 21)
  3 A human        30 -> 130   G=100  N=3000  active 140-130=10 (N of the turn's first call)
  4 A tool  a4     140 -> 200  G=60   N=3000  active 0 (last gap)
  5 C tool  c1     2 -> 2.5    G=0.5  N=4000  active 0          lead 2-0=2
Active KV = 1000*(9+10) + 2000*4 + 3000*10 + 4000*2 = 65000 token-s
Resumed tokens = 1000+2000+3000+3000+4000 = 13000
Baseline prefill (fresh tokens) = A: 1000 + (2000-1000) + (3000-2000) + 0 = 3000; C: 4000 -> 7000
"""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest

from conftest import corpus_file
from toollat.hints import HintCosts
from toollat.ingest import ingest
from toollat.simulation import (DROP, KEEP, OFFLOAD, Curve, Decision, HintPolicy, Oracle, PerToolMedianTTL,
                                StaticTTL, build_gaps, evaluate, oracle_frontier, plot, simulate)
from toollat.simulation.policies import PerToolHint
from toollat.simulation.gaps import subset

T0 = pd.Timestamp("2026-01-01T00:00:00Z")
COSTS = HintCosts()  # B=30, O=8, r=0.05
A_KV, TOKENS, BASE = 65000.0, 13000.0, 7000.0
PRED = ["pred_p10_ms", "pred_p50_ms", "pred_p90_ms", "pred_p99_ms"]


def at(s: float | None) -> pd.Timestamp | None:
    return None if s is None else T0 + pd.Timedelta(seconds=s)


def call(session, cid, tool, family, emitted, result, tokens, group=None, turn=0.0, prev=None, **extra):
    return {"session_id": session, "call_id": cid, "tool_name": tool, "tool_family": family,
            "emitted_at": at(emitted), "result_at": at(result), "parallel_group": group or cid,
            "context_tokens": tokens, "turn_started_at": at(turn), "prev_turn_ended_at": at(prev),
            "is_sidechain": False, "agent_id": None, **extra}


def frame(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in ("emitted_at", "result_at", "turn_started_at", "prev_turn_ended_at"):
        df[c] = pd.to_datetime(df[c], utc=True)
    return df


def hand_calls(predictions: bool = False) -> pd.DataFrame:
    rows = [
        call("A", "a1", "Bash", "shell", 10, 12, 1000),
        call("A", "a2", "Read", "read", 20, 21, 1900, group="m2"),
        call("A", "a3", "Grep", "search", 21, 26, 2000, group="m2"),
        call("A", "a4", "Bash", "shell", 140, 200, 3000, turn=130, prev=30),
        call("C", "c1", "Read", "read", 2, 2.5, 4000),
    ]
    df = frame(rows)
    if predictions:
        # ms; a2 and a3 cross, so the group's elementwise max [2000, 3000, 4000, 10000] is neither.
        df[PRED] = [[1000, 2000, 3000, 4000],
                    [2000, 2500, 3000, 10000],
                    [1000, 3000, 4000, 4500],
                    [30000, 60000, 120000, 300000],
                    [1e6, 2e6, 4e6, 8e6]]
        df["pred_p_long"] = [0.0, 0.0, 0.0, 0.6, 1.0]
    return df


def train_calls() -> pd.DataFrame:
    """Five calls per tool: medians Bash 3 s, Read 0.4 s, Grep 4 s; then a human gap of 200 s
    before one Edit call of 3 s (too few calls for a tool median of its own)."""
    rows, t = [], 0.0
    for tool, fam, walls in (("Bash", "shell", [1, 2, 3, 50, 100]), ("Read", "read", [0.1, 0.2, 0.4, 0.5, 0.6]),
                             ("Grep", "search", [1, 2, 4, 6, 8])):
        for w in walls:
            rows.append(call("T", f"t{len(rows)}", tool, fam, t, t + w, 500))
            t += w + 1
    rows.append(call("T", "t_h", "Edit", "edit", t + 300, t + 303, 500, turn=t + 250, prev=t + 50))
    return frame(rows)


def run(policy, df=None, costs=COSTS):
    gaps = build_gaps(hand_calls() if df is None else df)
    return evaluate(gaps, policy.decide(gaps, costs), costs)


# ---------------------------------------------------------------- gaps


def test_gaps_of_hand_timeline():
    g = build_gaps(hand_calls())
    f = g.frame
    assert f["kind"].tolist() == ["tool", "tool", "human", "tool", "tool"]
    assert f["gap_s"].tolist() == [2.0, 5.0, 100.0, 60.0, 0.5]
    assert f["tokens"].tolist() == [1000, 2000, 3000, 3000, 4000]   # group: max(1900, 2000)
    assert f["active_s"].tolist() == [9.0, 4.0, 10.0, 0.0, 0.0]
    assert f["lead_s"].tolist() == [10.0, 0.0, 0.0, 0.0, 2.0]
    assert f["tool_name"].tolist()[:2] == ["Bash", "Grep"]            # the group's longest call
    assert f["n_calls"].tolist() == [1, 2, 0, 1, 1]
    assert g.active_kv == A_KV and g.baseline_prefill == BASE
    assert sorted(g.members.loc[g.members["gap"] == 1, "tool_name"]) == ["Grep", "Read"]
    r = g.report
    assert (r.sessions, r.streams, r.tool_gaps, r.human_gaps, r.single_call_sessions) == (2, 2, 4, 1, 1)
    assert r.sessions_without_tokens == r.skipped_gaps_missing_result == r.negative_gaps_clipped == 0


def test_subagent_calls_are_their_own_stream():
    rows = [call("S", "s1", "Task", "agent", 0, 100, 1000),
            call("S", "x1", "Read", "read", 10, 11, 300, is_sidechain=True, agent_id="sub1"),
            call("S", "x2", "Read", "read", 20, 22, 400, is_sidechain=True, agent_id="sub1")]
    g = build_gaps(frame(rows))
    assert g.report.streams == 2
    # main: Task gap 0 -> 100 and nothing after; subagent: 10 -> 11, active 20 - 11 = 9, then 20 -> 22.
    sub = g.frame[g.frame["stream"] != "S"]
    assert sub["gap_s"].tolist() == [1.0, 2.0] and sub["active_s"].tolist() == [9.0, 0.0]


# ---------------------------------------------------------------- static TTLs


@pytest.mark.parametrize("ttl, hit, hold, reprefill", [
    # T=1: only C (0.5 s) fits. Held: 1*1000 + 1*2000 + 1*3000 + 1*3000 + 0.5*4000 = 11000
    (1, 4000, 11000, 9000),
    # T=10: gaps 1, 2, 5 fit. Held: 2*1000 + 5*2000 + 10*3000 + 10*3000 + 0.5*4000 = 74000
    (10, 7000, 74000, 6000),
    # T=60: gap 4 (60 s) fits too (inclusive). Held: 2000 + 10000 + 60*3000 + 60*3000 + 2000 = 374000
    (60, 10000, 374000, 3000),
    # T=100: everything. Held: 2000 + 10000 + 100*3000 + 60*3000 + 2000 = 494000
    (100, 13000, 494000, 0),
])
def test_static_ttl_by_hand(ttl, hit, hold, reprefill):
    m = run(StaticTTL(ttl))
    assert m["hit_rate"] == pytest.approx(hit / TOKENS)
    assert m["storage_ratio"] == pytest.approx(hold / A_KV)
    assert m["equiv_storage_ratio"] == pytest.approx(hold / A_KV)
    assert m["host_storage_ratio"] == 0 and m["offload_tokens"] == 0
    assert m["reprefill_tokens"] == reprefill
    assert m["prefill_amplification"] == pytest.approx((BASE + reprefill) / BASE)
    assert m["cost_ratio"] == pytest.approx((hold + 30 * reprefill) / A_KV)
    assert m["keep_share"] == 1.0


def test_static_by_kind_adds_up():
    m = run(StaticTTL(10))
    tool, human = m["by_kind"]["tool"], m["by_kind"]["human"]
    assert tool["hit_rate"] == pytest.approx(7000 / 10000) and human["hit_rate"] == 0.0
    assert human["storage_ratio"] == pytest.approx(10 * 3000 / A_KV)
    assert tool["storage_ratio"] + human["storage_ratio"] == pytest.approx(m["storage_ratio"])
    assert human["prefill_amplification"] == pytest.approx((BASE + 3000) / BASE)


# ---------------------------------------------------------------- per-tool median


def test_per_tool_median_by_hand():
    p = PerToolMedianTTL().fit(train_calls())
    assert [p.by_tool[t] for t in ("Bash", "Read", "Grep")] == pytest.approx([3.0, 0.4, 4.0])
    assert "Edit" not in p.by_tool and p.human_ttl_s == pytest.approx(200.0)
    m = run(p)
    # TTLs: a1 Bash 3 (G=2 hit, held 2*1000); a2+a3 max(0.4, 4) = 4 (G=5 miss, held 4*2000);
    # human 200 (G=100 hit, held 100*3000); a4 Bash 3 (G=60 miss, held 3*3000);
    # c1 Read 0.4 (G=0.5 miss, held 0.4*4000)
    hold = 2000 + 8000 + 300000 + 9000 + 1600
    assert m["hit_rate"] == pytest.approx((1000 + 3000) / TOKENS)
    assert m["storage_ratio"] == pytest.approx(hold / A_KV)
    assert m["reprefill_tokens"] == 2000 + 3000 + 4000
    assert m["prefill_amplification"] == pytest.approx((BASE + 9000) / BASE)
    # Unknown tool: its family's median (search: Grep's 4 s), else all 16 calls' median:
    # .1 .2 .4 .5 .6 1 1 2 | 2 3 3 4 6 8 50 100 -> 2 s.
    q = build_gaps(frame([call("Q", "q1", "Glob", "search", 0, 1, 10), call("Q", "q2", "Zap", "other", 2, 3, 10)]))
    assert p.decide(q, COSTS).ttl_s.tolist() == pytest.approx([4.0, 2.0])


# ---------------------------------------------------------------- toollat hints


def test_hint_policy_by_hand():
    # Hint for quantiles v (s) at levels .1 .5 .9 .99: mass .1 .4 .4 .09 at v, .01 at 2*v[-1].
    # Host memory holds at most H = B/r = 600 s. Plans: keep T then offload / keep T then drop.
    # a1 [1,2,3,4]: keep 4 then offload: E[min(G,4)] = .1+.8+1.2+.36+.04 = 2.5, + .01*(8+.05*4)
    #    = 2.582 < keep 4 then drop 2.8 < offload now 8 + .05*2.54 = 8.127; drop 30
    #    -> keep 4 s then offload; G=2 hit, held 2*1000.
    # group max [2,3,4,10]: keep 10 then offload: 4.0 + .01*(8+.05*10) = 4.085 < then drop 4.3,
    #    keep 4 then offload 3.4 + .09*8.3 + .01*8.8 = 4.235, offload now 8.205 -> keep 10 s;
    #    G=5 hit, held 5*2000.
    # a4 [30,60,120,300]: offload now 8 + .05*108 = 13.4 < drop 30 < keep 30 then offload 41.1
    #    -> offload, host TTL H = 600 s; G=60 hit, host-held 60*3000, 3000 out + 3000 back.
    # c1 [1000..8000]: offload now 8 + .05*600 + 30 = 68 (every outcome outlives H) -> drop;
    #    G=0.5 re-prefilled.
    # human gap: human_ttl_s = 120 -> G=100 hit, held 100*3000.
    m = run(HintPolicy(human_ttl_s=120), hand_calls(predictions=True))
    gpu, host = 2000 + 10000 + 300000, 180000
    assert m["hit_rate"] == pytest.approx(9000 / TOKENS)
    assert m["storage_ratio"] == pytest.approx(gpu / A_KV)
    assert m["host_storage_ratio"] == pytest.approx(host / A_KV)
    assert m["equiv_storage_ratio"] == pytest.approx((gpu + 0.05 * host + 8 * 3000) / A_KV)
    assert m["offload_tokens"] == 6000 and m["reprefill_tokens"] == 4000
    assert m["prefill_amplification"] == pytest.approx((BASE + 4000) / BASE)
    assert m["cost_ratio"] == pytest.approx((gpu + 0.05 * host + 8 * 3000 + 30 * 4000) / A_KV)
    assert (m["keep_share"], m["offload_share"], m["drop_share"]) == (0.6, 0.2, 0.2)
    d = HintPolicy(human_ttl_s=120).decide(build_gaps(hand_calls(True)), COSTS)
    assert d.action.tolist() == [KEEP, KEEP, KEEP, OFFLOAD, DROP]
    assert d.ttl_s[:4].tolist() == [4.0, 10.0, 120.0, 600.0]
    assert d.demote_s[:3].tolist() == [600.0, 600.0, 0.0]  # tool keeps demote to host; the human TTL drops


def test_per_tool_hint_is_the_hint_rule_on_the_tool_distribution():
    # The fair per-tool baseline decides exactly what the hint policy decides when each call's
    # "prediction" is its tool's training quantiles (a group: the elementwise max over its tools).
    per_tool = PerToolHint.fit(train_calls(), human_ttl_s=120)
    df = hand_calls()
    q = {t: [1000.0 * 10.0 ** v for v in per_tool.baseline.row(t)[:4]] for t in ("Bash", "Read", "Grep")}
    assert q["Bash"][1] == pytest.approx(3000.0) and q["Read"][1] == pytest.approx(400.0)  # the medians
    df[PRED] = [q[t] for t in df["tool_name"]]
    gaps = build_gaps(df)
    mine, ref = per_tool.decide(gaps, COSTS), HintPolicy(human_ttl_s=120).decide(gaps, COSTS)
    assert mine.action.tolist() == ref.action.tolist()
    np.testing.assert_allclose(mine.ttl_s, ref.ttl_s)
    np.testing.assert_allclose(mine.demote_s, ref.demote_s)
    # Bash (3 s median, a 50-100 s tail): keep 3 s, then to host memory for the tail, where the
    # median TTL drops it at 3 s; the Read+Grep group keeps 7.9 s, past both medians.
    assert mine.action.tolist() == [KEEP] * 5 and mine.demote_s[0] == pytest.approx(600.0)
    assert mine.ttl_s[1] == pytest.approx(7.908, abs=1e-3)
    assert run(per_tool)["hit_rate"] == pytest.approx(run(HintPolicy(human_ttl_s=120), df)["hit_rate"])


def test_keep_then_demote_by_hand():
    # Every gap kept 1 s on GPU, then moved to host memory for up to 600 s.
    # a1 G=2 N=1000: GPU 1*1000, host 1*1000; group G=5 N=2000: GPU 2000, host 4*2000;
    # human G=100 N=3000: GPU 3000, host 99*3000; a4 G=60 N=3000: GPU 3000, host 59*3000;
    # c1 G=0.5 N=4000: back before the TTL, GPU 0.5*4000. All hits; 9000 tokens moved out and back.
    gaps = build_gaps(hand_calls())
    n = len(gaps.frame)
    m = evaluate(gaps, Decision(np.full(n, KEEP, dtype=np.int8), np.ones(n), 0, np.full(n, 600.0)), COSTS)
    gpu, host = 1000 + 2000 + 3000 + 3000 + 2000, 1000 + 8000 + 297000 + 177000
    assert m["hit_rate"] == 1.0 and m["reprefill_tokens"] == 0
    assert m["storage_ratio"] == pytest.approx(gpu / A_KV)
    assert m["host_storage_ratio"] == pytest.approx(host / A_KV)
    assert m["offload_tokens"] == 18000
    assert m["equiv_storage_ratio"] == pytest.approx((gpu + 0.05 * host + 8 * 9000) / A_KV)
    # With 50 s on host instead, the 60 s and 100 s gaps outlive it and are re-prefilled.
    m50 = evaluate(gaps, Decision(np.full(n, KEEP, dtype=np.int8), np.ones(n), 0, np.full(n, 50.0)), COSTS)
    assert m50["hit_rate"] == pytest.approx(1 - 6000 / TOKENS) and m50["reprefill_tokens"] == 6000


def test_hint_policy_human_quantiles():
    # Human waits [20, 60, 200, 500] s: offload now 8 + .05*E[G] (E = 2+24+80+45+10 = 161) = 16.05
    # < drop 30 -> offload for H = 600 s; the 100 s human gap is a hit from host memory.
    d = HintPolicy(human_ttl_s=120, human_quantiles_ms=[20e3, 60e3, 200e3, 500e3]).decide(build_gaps(hand_calls(True)), COSTS)
    assert d.action[2] == OFFLOAD and d.ttl_s[2] == 600.0


def test_hint_policy_needs_prediction_columns():
    with pytest.raises(ValueError, match="prediction columns"):
        simulate(hand_calls(), policies=["toollat"])
    with pytest.raises(ValueError, match="prediction columns"):
        run(HintPolicy(human_ttl_s=10))
    assert "toollat" not in simulate(hand_calls()).policies  # default: only if predictable


def test_hint_policy_gap_without_prediction_falls_back():
    df = hand_calls(predictions=True)
    df.loc[df["call_id"] == "a2", "pred_p50_ms"] = np.nan  # the whole group loses its prediction
    d = HintPolicy(human_ttl_s=7).decide(build_gaps(df), COSTS)
    assert d.fallback == 1 and d.action[1] == KEEP and d.ttl_s[1] == 7.0


# ---------------------------------------------------------------- oracle


def test_oracle_by_hand():
    # keep if G <= min(8 + .05G, 30); offload if 8 + .05G <= 30; else drop.
    # gaps 1, 2, 5 kept exactly G: held 2*1000 + 5*2000 + 0.5*4000 = 14000
    # human (100 s: 13 <= 30) and a4 (60 s: 11) offloaded: host-held 100*3000 + 60*3000 = 480000
    m = run(Oracle())
    assert m["hit_rate"] == 1.0 and m["reprefill_tokens"] == 0 and m["prefill_amplification"] == 1.0
    assert m["storage_ratio"] == pytest.approx(14000 / A_KV)
    assert m["equiv_storage_ratio"] == pytest.approx((14000 + 0.05 * 480000 + 8 * 6000) / A_KV)
    assert m["offload_tokens"] == 12000
    # B = 10: the two offloads now cost more than a re-prefill -> dropped.
    m10 = run(Oracle(replace(COSTS, breakeven_s=10)))
    assert m10["hit_rate"] == pytest.approx(7000 / TOKENS)
    assert m10["equiv_storage_ratio"] == pytest.approx(14000 / A_KV)


def test_oracle_frontier_by_hand():
    f = oracle_frontier(build_gaps(hand_calls()), COSTS)
    # Ascending min(G, 8 + .05G): C 0.5 (N 4000), a1 2 (1000), a2+a3 5 (2000), a4 11 (3000), human 13 (3000)
    assert np.allclose(f.x * A_KV, [0, 2000, 4000, 14000, 47000, 86000])
    assert np.allclose(f.y * TOKENS, [0, 4000, 5000, 7000, 10000, 13000])
    # At static 10 s's storage (74000): 10000 + 3000 * (74000 - 47000) / 39000 tokens
    assert f.hit_rate_at(74000 / A_KV) == pytest.approx((10000 + 3000 * 27000 / 39000) / TOKENS)
    assert f.storage_at(7000 / TOKENS) == pytest.approx(14000 / A_KV)


def test_oracle_breakeven_sweep_traces_its_frontier():
    gaps = build_gaps(hand_calls())
    f = oracle_frontier(gaps, COSTS)
    for b in (0.1, 1, 3, 10, 12, 30):
        m = evaluate(gaps, Oracle(replace(COSTS, breakeven_s=b)).decide(gaps, COSTS), COSTS)
        assert f.hit_rate_at(m["equiv_storage_ratio"]) == pytest.approx(m["hit_rate"])


def _random_calls(rng: np.random.Generator, sessions: int = 40) -> pd.DataFrame:
    """Random sessions: 1-11 groups of 1-3 calls, lognormal latencies, some new user turns."""
    rows = []
    for s in range(sessions):
        t, tokens, turn, prev = 0.0, float(rng.integers(1000, 20000)), 0.0, None
        for i in range(int(rng.integers(1, 12))):
            if i and rng.random() < 0.2:  # a new user turn after the human thinks
                prev, turn = t, t + rng.exponential(100)
                t = turn + rng.exponential(5)
            end = t
            for j in range(int(rng.integers(1, 4))):
                wall = float(rng.lognormal(0.5, 2.0))
                rows.append(call(f"s{s}", f"s{s}m{i}c{j}", str(rng.choice(["Bash", "Read", "Grep"])), "other",
                                 t + 0.1 * j, t + 0.1 * j + wall, tokens, group=f"s{s}m{i}", turn=turn, prev=prev))
                end = max(end, t + 0.1 * j + wall)
            t = end + rng.exponential(5)
            tokens += float(rng.integers(0, 3000))
    df = frame(rows)
    df[PRED] = np.sort(rng.lognormal(0.5, 2.0, size=(len(df), 4)) * 1000, axis=1)
    return df


def test_oracle_bounds_every_policy():
    rng = np.random.default_rng(0)
    df = _random_calls(rng)
    res = simulate(df, costs=COSTS, train_df=df)
    gaps = build_gaps(df)
    front = res.frontiers["oracle"]
    points = [(m["equiv_storage_ratio"], m["hit_rate"], m["cost_ratio"], n) for n, m in res.policies.items()]
    for key in ("per_tool_median", "toollat", "static"):
        points += [(p["equiv_storage_ratio"], p["hit_rate"], p["cost_ratio"], key) for p in res.curves[key]]
    # Random decisions too: keep/offload/drop with random TTLs.
    for _ in range(20):
        d = Decision(rng.integers(0, 3, len(gaps.frame)).astype(np.int8), rng.lognormal(1, 2, len(gaps.frame)))
        m = evaluate(gaps, d, COSTS)
        points.append((m["equiv_storage_ratio"], m["hit_rate"], m["cost_ratio"], "random"))
    oracle_cost = res.policies["oracle"]["cost_ratio"]
    for rc, hit, cost, name in points:
        assert front.hit_rate_at(rc) >= hit - 1e-12, name
        assert cost >= oracle_cost - 1e-12, name


# ---------------------------------------------------------------- simulate, headline, output


def test_simulate_headline_by_hand(tmp_path):
    res = simulate(hand_calls(predictions=True), costs=COSTS, train_df=train_calls(),
                   static_ttls_s=(1, 10, 60, 100), sweep_scales=(1.0,))
    h = res.headline
    # cost_ratio = (held + 30 * re-prefilled) / 65000: 1 s 281000, 10 s 254000, 60 s 464000, 100 s 494000
    assert h["best_static_ttl_s"] == 10.0 and res.best_static == "static_10s"
    assert h["hit_rate_static"] == pytest.approx(7000 / TOKENS)
    rs = 74000 / A_KV
    oracle_at = (10000 + 3000 * 27000 / 39000) / TOKENS
    assert h["hit_rate_oracle_at_static_storage"] == pytest.approx(oracle_at)
    # toollat in simulate holds human gaps for the best static TTL (10 s): the human gap misses
    # (held 10*3000); hits 1000+2000+3000; Rc = (2000+10000+30000 + .05*180000 + 8*3000) / 65000.
    assert res.data["toollat_human_ttl_s"] == 10.0
    t_rc, t_hit = 75000 / A_KV, 6000 / TOKENS
    assert h["hit_rate_toollat"] == pytest.approx(t_hit)
    assert h["equiv_storage_ratio_toollat"] == pytest.approx(t_rc)
    # Its curve: (0,0) -> (75000, 6000) only; at 74000 it reads 6000 * 74/75 tokens.
    at = t_hit * 74000 / 75000
    assert h["hit_rate_toollat_at_static_storage"] == pytest.approx(at)
    assert h["gap_closed_at_equal_storage"] == pytest.approx((at - 7000 / TOKENS) / (oracle_at - 7000 / TOKENS))
    assert h["storage_ratio_at_equal_hit_rate"] is None  # toollat never reaches 7000/13000 here
    # On GPU memory alone toollat sits at (42000, 6000): at 74000 it is past its last point.
    assert h["hit_rate_toollat_at_static_gpu_storage"] == pytest.approx(t_hit)
    assert h["gpu_storage_ratio_at_equal_hit_rate"] is None
    # The oracle reaches 7000/13000 at 14000: 14000 / 74000 of static's storage.
    assert h["storage_ratio_oracle_at_static_hit_rate"] == pytest.approx(14000 / 74000)
    assert h["hit_rate_per_tool_median"] == pytest.approx(4000 / TOKENS)
    assert res.data["per_tool_median_fit"] == "train_df"

    out = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert set(out) == {"headline", "costs", "data", "policies", "curves"}
    assert out["data"]["tool_gaps"] == 4 and out["data"]["human_gaps"] == 1
    assert set(out["policies"]) == {"static_1s", "static_10s", "static_1m", "static_100s",
                                    "per_tool_median", "per_tool", "toollat", "oracle"}
    assert res.data["per_tool_fit"] == "train_df" and h["hit_rate_per_tool"] is not None
    table = res.table()
    assert "static_10s *" in table.index and table.loc["oracle", "hit_rate"] == 1.0
    png = plot(res, tmp_path / "sim.png")
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_policy_objects_take_their_slot():
    # The per-tool medians of test_per_tool_median_by_hand, given instead of fitted.
    ptm = PerToolMedianTTL.from_medians({"Bash": 3.0, "Read": 0.4, "Grep": 4.0}, overall_s=2.0, human_ttl_s=200.0)
    res = simulate(hand_calls(True), policies=["static", ptm, HintPolicy(human_ttl_s=120), StaticTTL(7)],
                   static_ttls_s=(10,), sweep_scales=(1.0,))
    assert res.data["per_tool_median_fit"] == "given" and res.data["toollat_human_ttl_s"] == 120
    assert res.policies["per_tool_median"]["hit_rate"] == pytest.approx(4000 / TOKENS)
    assert res.policies["toollat"]["hit_rate"] == pytest.approx(9000 / TOKENS)
    assert "static_7s" in res.policies and "oracle" not in res.policies
    with pytest.raises(ValueError, match="unknown policy"):
        simulate(hand_calls(), policies=["lru"])


def test_static_sweep_monotone():
    res = simulate(_random_calls(np.random.default_rng(1)), policies=["static"])
    for key in ("hit_rate", "storage_ratio"):
        v = [p[key] for p in res.curves["static"]]
        assert all(b >= a for a, b in zip(v, v[1:])), key


def test_curve_envelope_and_interpolation():
    # Points (1, .5), (2, .55), (3, .9) plus (0, 0): (2, .55) is under the chord (1,.5)-(3,.9).
    c = Curve.from_points([1, 2, 3], [0.5, 0.55, 0.9])
    assert c.x.tolist() == [0, 1, 3] and c.y.tolist() == [0, 0.5, 0.9]
    assert c.hit_rate_at(2) == pytest.approx(0.7) and c.hit_rate_at(10) == 0.9
    assert c.storage_at(0.7) == pytest.approx(2.0) and np.isnan(c.storage_at(0.95))
    # A point past the peak never lowers the curve.
    assert Curve.from_points([1, 2], [0.8, 0.6]).hit_rate_at(2) == 0.8


# ---------------------------------------------------------------- bad input


def test_bad_input_is_reported_not_fatal():
    rows = [
        *hand_calls().to_dict("records"),
        # B: no token counts at all -> the table median of known gap tokens,
        #    median(1000, 2000, 3000, 3000, 4000, 5000) = 3000
        call("B", "b1", "Bash", "shell", 0, 1, None, turn=None),
        call("B", "b2", "Bash", "shell", 3, 4.5, None, turn=None),
        # D: d1 never got a result (skipped), d2 has a clock-skewed result (gap clipped to 0)
        call("D", "d1", "Bash", "shell", 0, None, 5000, turn=None),
        call("D", "d2", "Read", "read", 5, 4, 5000, turn=None),
        # E: a call without an emission time cannot be placed
        call("E", "e1", "Read", "read", None, 1, 100, turn=None),
    ]
    df = frame(rows)
    g = build_gaps(df)
    r = g.report
    assert r.sessions_without_tokens == 1 and r.gaps_with_imputed_tokens == 2
    assert r.token_fallback_constant == 3000.0 and r.notes
    assert r.skipped_gaps_missing_result == 1 and r.skipped_calls_missing_result == 1
    assert r.negative_gaps_clipped == 1 and r.zero_gaps == 1
    assert r.calls_without_emission == 1
    b = g.frame[g.frame["session_id"] == "B"]
    assert b["tokens"].tolist() == [3000.0, 3000.0] and b["tokens_imputed"].all()
    assert b["active_s"].tolist() == [2.0, 0.0] and b["gap_s"].tolist() == [1.0, 1.5]
    # d1's start (0) is known, so nothing runs before d2; after the skipped d1 nothing is known.
    d = g.frame[g.frame["session_id"] == "D"]
    assert d["gap_s"].tolist() == [0.0] and d["active_s"].tolist() == [0.0] and d["lead_s"].tolist() == [0.0]
    # Active KV grows by B's 3000 * 2; baseline by B's 3000 and D's 5000.
    assert g.active_kv == A_KV + 6000 and g.baseline_prefill == BASE + 3000 + 5000
    res = simulate(df, train_df=train_calls())
    assert res.to_dict()["data"]["sessions_without_tokens"] == 1
    m = res.policies["static_1s"]
    # static 1 s: hits C (4000), b1 (1 s, 3000), d2 (0 s, 5000) of 13000 + 6000 + 5000 tokens
    assert m["hit_rate"] == pytest.approx((4000 + 3000 + 5000) / (TOKENS + 6000 + 5000))


def test_empty_table():
    res = simulate(frame([call("A", "a1", "Bash", "shell", 0, 1, 10)]).iloc[:0])
    assert res.data["tool_gaps"] == 0
    assert res.headline["best_static_ttl_s"] is None
    json.dumps(res.to_dict(), allow_nan=False)


def test_subset_keeps_totals():
    g = build_gaps(hand_calls())
    t = subset(g, ["tool"])
    assert len(t.frame) == 4 and t.active_kv == g.active_kv
    assert sorted(t.members["gap"].unique()) == [0, 1, 2, 3]


# ---------------------------------------------------------------- real corpus


PACKMIND = "PackmindHub__context-evaluator/claude-code/"


def test_corpus_sessions(corpus):
    paths = [corpus_file(corpus, PACKMIND + "00acd976-784c-4077-95cd-19aa1b51739b.jsonl.gz"),
             corpus_file(corpus, PACKMIND + "4550d4cb-1ea8-43b2-9231-005d7c1475b9.jsonl.gz")]
    df = ingest(paths).to_pandas()
    res = simulate(df)
    d = res.data
    assert d["sessions"] == df["session_id"].nunique() == 2
    assert d["tool_gaps"] == df.groupby(["session_id", "parallel_group"]).ngroups
    assert d["sessions_without_tokens"] == 0 and d["skipped_gaps_missing_result"] == 0
    for key in ("hit_rate", "storage_ratio"):
        v = [p[key] for p in res.curves["static"]]
        assert all(b >= a for a, b in zip(v, v[1:])), key
    front = res.frontiers["oracle"]
    for name, m in res.policies.items():
        assert front.hit_rate_at(m["equiv_storage_ratio"]) >= m["hit_rate"] - 1e-12, name
    json.dumps(res.to_dict(), allow_nan=False)
