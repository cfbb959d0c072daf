"""The decision metrics (``toollat.evaluation.metrics``): the decision cost of the hint rule on
realized durations, the oracle, ``decision_gap_closed``, the expected calibration error of
``p_long`` and PR-AUC at 30 s, worked by hand; pooled folds; and that ``toollat evaluate``
(table and ``--json``), training's reliability plot and ``simulate``'s headline carry them.

Costs throughout: B = 30 s (re-prefill), O = 8 s (offload and back), r = 0.05 (host memory per
second), so host memory holds a KV at most H = B / r = 600 s; TTLs at least 100 ms.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pandas as pd
import pytest

from toollat.evaluation.evaluate import pool_predictions, report
from toollat.evaluation.metrics import compute, expected_calibration_error
from toollat.hints import decision_costs, decision_gap_closed, oracle_costs
from conftest import decide, run_cli
from toollat.hints import HintCosts
from toollat.models import Prediction

LEVELS = (0.1, 0.5, 0.9, 0.99)
COSTS = HintCosts()  # B 30, O 8, r 0.05, min TTL 100 ms

# (predicted quantiles in ms, the hint they give, realized wall ms, its cost by hand, the oracle's by hand)
CASES = [
    # keep 5 s then offload
    ([100, 500, 2000, 5000], ("keep", 5000.0, "offload"), 400.0, 0.4, 0.4),
    ([100, 500, 2000, 5000], ("keep", 5000.0, "offload"), 20_000.0, 5 + 8 + 0.05 * 15, 8 + 0.05 * 20),
    ([100, 500, 2000, 5000], ("keep", 5000.0, "offload"), 700_000.0, 5 + 8 + 0.05 * 600 + 30, 30.0),
    # keep 2 s then drop
    ([1000, 2000, 1_000_000, 2_000_000], ("keep", 2000.0, "drop"), 1500.0, 1.5, 1.5),
    ([1000, 2000, 1_000_000, 2_000_000], ("keep", 2000.0, "drop"), 100_000.0, 2 + 30, 8 + 0.05 * 100),
    # offload now (host TTL H)
    ([1000, 20_000, 200_000, 900_000], ("offload", 600_000.0, None), 100_000.0, 8 + 0.05 * 100, 8 + 0.05 * 100),
    ([1000, 20_000, 200_000, 900_000], ("offload", 600_000.0, None), 700_000.0, 8 + 0.05 * 600 + 30, 30.0),
    # drop now
    ([100_000, 300_000, 900_000, 2_000_000], ("drop", 0.0, None), 50.0, 30.0, 0.05),
    # keep with the TTL raised to the 100 ms minimum: an 80 ms call is a hit
    ([10, 20, 30, 40], ("keep", 100.0, "offload"), 80.0, 0.08, 0.08),
]


def test_decision_cost_worked_by_hand():
    q = np.array([c[0] for c in CASES], dtype=np.float64)
    wall = np.array([c[2] for c in CASES])
    for c in CASES:  # the plans the hand figures assume are the ones toollat.hints chooses
        h = decide(LEVELS, c[0], COSTS)
        assert (h.action, h.ttl_ms, h.then) == c[1]
    np.testing.assert_allclose(decision_costs(LEVELS, q, wall, COSTS), [c[3] for c in CASES], rtol=0, atol=1e-9)
    np.testing.assert_allclose(oracle_costs(wall, COSTS), [c[4] for c in CASES], rtol=0, atol=1e-9)


def _by_the_docstring(h, g: float, c: HintCosts) -> float:
    """``toollat.hints``' module docstring, written out for one plan and one gap (seconds)."""
    host = c.breakeven_s / c.offload_hold_ratio
    if h.action == "drop":
        return c.breakeven_s if g > 0 else 0.0
    t = 0.0 if h.action == "offload" else h.ttl_ms / 1000.0
    then = "offload" if h.action == "offload" else h.then
    cost = min(g, t)
    if g > t:
        cost += c.breakeven_s if then == "drop" else (
            c.offload_cost_s + c.offload_hold_ratio * min(g - t, host) + c.breakeven_s * (g > t + host))
    return cost


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_decision_cost_agrees_with_the_hint_rule_and_the_oracle_bounds_it(seed):
    rng = np.random.default_rng(seed)
    n = 400
    q = np.sort(10 ** rng.uniform(1, 6.5, size=(n, len(LEVELS))), axis=1)
    wall = 10 ** rng.uniform(0.5, 6.5, size=n)
    costs = HintCosts(breakeven_s=float(rng.uniform(5, 60)), offload_cost_s=float(rng.uniform(0, 10)),
                      offload_hold_ratio=float(rng.uniform(0.01, 0.2)))
    got = decision_costs(LEVELS, q, wall, costs)
    want = [_by_the_docstring(decide(LEVELS, q[i], costs), wall[i] / 1000.0, costs) for i in range(n)]
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-9)
    oracle = oracle_costs(wall, costs)
    assert (oracle <= got + 1e-9).all()
    g = wall / 1000.0
    np.testing.assert_allclose(oracle, np.minimum.reduce([g, costs.offload_cost_s + costs.offload_hold_ratio * g
                                                          + costs.breakeven_s * (g > costs.breakeven_s / costs.offload_hold_ratio),
                                                          np.full(n, costs.breakeven_s)]))


def test_crossed_quantiles_are_read_sorted():
    crossed = np.array([[500, 100, 5000, 2000]], dtype=np.float64)
    assert decision_costs(LEVELS, crossed, [20_000.0], COSTS)[0] == pytest.approx(13.75)


def test_gap_closed():
    assert decision_gap_closed(8.0, 10.0, 4.0) == pytest.approx(1 / 3)
    assert decision_gap_closed(10.0, 10.0, 4.0) == 0.0
    assert decision_gap_closed(4.0, 10.0, 4.0) == 1.0
    assert decision_gap_closed(12.0, 10.0, 4.0) == pytest.approx(-1 / 3)  # worse than the fair policy
    assert np.isnan(decision_gap_closed(3.0, 4.0, 4.0))  # the fair policy is already the oracle


def test_expected_calibration_error_worked_by_hand():
    p = np.array([0.05, 0.05, 0.15, 0.95, 1.0])
    y = np.array([False, True, False, True, True])
    # bin [0, .1): 2 calls, mean p .05, share long .5 -> 2/5 * .45; bin [.1, .2): 1 call, .15 vs 0
    # -> 1/5 * .15; bin [.9, 1] (1.0 included): 2 calls, mean .975 vs 1 -> 2/5 * .025
    assert expected_calibration_error(y, p) == pytest.approx(2 / 5 * 0.45 + 1 / 5 * 0.15 + 2 / 5 * 0.025)
    assert expected_calibration_error(np.array([True, False]), np.array([1.0, 0.0])) == 0.0


def test_compute_reports_pr_auc_at_30_s_and_ece():
    wall = np.array([1_000.0, 5_000.0, 40_000.0, 50_000.0, 90_000.0, 2_000.0])
    # quantiles that put exactly the calls of 30 s or more above 30 s at every level
    q = np.log10(np.outer(np.where(wall >= 30_000, 45_000.0, 1_500.0), [0.8, 1.0, 1.2, 1.4]) / 1000.0)
    p_long = np.array([0.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    m = compute(wall, LEVELS, q, p_long, 0.5, COSTS, fair_cost=None)
    assert m["long_pr_auc_30s"] == 1.0 and m["long_pr_auc"] == 1.0 and m["p_long_ece"] == 0.0
    assert np.isnan(m["decision_gap_closed"])
    m = compute(wall, LEVELS, q[::-1], p_long[::-1], 0.5, COSTS)  # predictions of other calls
    assert m["long_pr_auc_30s"] < 1.0 and m["p_long_ece"] == pytest.approx(2 / 6)


def test_report_gap_closed_against_the_per_tool_policy_and_pooled_thresholds():
    wall = np.array([400.0, 20_000.0, 700_000.0, 1_500.0, 100_000.0])
    calls = pd.DataFrame({"tool_family": ["shell"] * 5})
    model_q = np.array([CASES[i][0] for i in (0, 1, 2, 3, 4)], dtype=np.float64)
    fair_q = np.tile([1000, 20_000, 200_000, 900_000], (5, 1)).astype(np.float64)  # offload every call
    model = Prediction(LEVELS, np.log10(model_q / 1000.0), np.array([0.1, 0.2, 0.9, 0.1, 0.7]))
    fair = Prediction(LEVELS, np.log10(fair_q / 1000.0), np.full(5, 0.4))
    rep = report(calls, wall, {"toollat": (model, 0.5), "per_tool_median": (fair, 0.5)}, family_min=1, costs=COSTS)
    by_hand_model = (0.4 + 13.75 + 73 + 1.5 + 32) / 5
    by_hand_fair = ((8 + 0.02) + (8 + 1) + (8 + 30 + 30) + (8 + 0.075) + (8 + 5)) / 5
    by_hand_oracle = (0.4 + 9 + 30 + 1.5 + 13) / 5
    m = rep["models"]
    assert m["toollat"]["decision_cost"] == pytest.approx(by_hand_model)
    assert m["per_tool_median"]["decision_cost"] == pytest.approx(by_hand_fair)
    assert rep["decision"]["oracle_cost"] == pytest.approx(by_hand_oracle)
    assert m["toollat"]["decision_gap_closed"] == pytest.approx((by_hand_fair - by_hand_model) / (by_hand_fair - by_hand_oracle))
    assert m["per_tool_median"]["decision_gap_closed"] == 0.0
    assert rep["per_family"]["toollat"]["shell"]["decision_gap_closed"] == m["toollat"]["decision_gap_closed"]

    # Two folds with different long thresholds: pooled, each call keeps its fold's p_long and threshold.
    half = {"toollat": (Prediction(LEVELS, model.quantiles[:2], model.p_long[:2]), 0.15),
            "per_tool_median": (Prediction(LEVELS, fair.quantiles[:2], fair.p_long[:2]), 0.5)}
    rest = {"toollat": (Prediction(LEVELS, model.quantiles[2:], model.p_long[2:]), 0.8),
            "per_tool_median": (Prediction(LEVELS, fair.quantiles[2:], fair.p_long[2:]), 0.5)}
    pooled = pool_predictions([half, rest])
    np.testing.assert_array_equal(pooled["toollat"][0].p_long, model.p_long)
    np.testing.assert_array_equal(pooled["toollat"][1], [0.15, 0.15, 0.8, 0.8, 0.8])
    rep = report(calls, wall, pooled, costs=COSTS)
    # predicted long: .2 >= .15 (20 s, not long) and .9 >= .8 (700 s, long); 100 s (p .7 < .8) missed
    assert rep["models"]["toollat"]["long_precision"] == 0.5 and rep["models"]["toollat"]["long_recall"] == 0.5
    assert rep["models"]["toollat"]["decision_cost"] == pytest.approx(by_hand_model)


def test_reliability_plot():
    from toollat.evaluation import plots

    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 500)
    wall = np.where(rng.uniform(0, 1, 500) < p, 90_000.0, 1_000.0)
    pred = Prediction(LEVELS, np.zeros((500, 4)), p)
    fig = plots.reliability(wall, {"toollat": (pred, 0.5)})
    ax = fig.axes[0]
    ece = expected_calibration_error(wall >= 60_000, p)
    assert ax.get_legend().get_texts()[0].get_text() == f"toollat (ECE {ece:.3f})" and 0 < ece < 0.1
    assert len(fig.axes) == 2


# -- the commands ----------------------------------------------------------------------------------
NEW = ("long_pr_auc", "long_pr_auc_30s", "p_long_ece", "weighted_mae_log10", "decision_cost", "decision_gap_closed")


@pytest.fixture(scope="module")
def held_out(small_split, tmp_path_factory):
    _, test = small_split
    path = tmp_path_factory.mktemp("tail") / "held_out.parquet"
    test.to_parquet(path)
    return path, test


def test_evaluate_json_and_table_carry_the_decision_metrics(small_bundle, held_out):
    from toollat.predictor import Predictor

    path, test = held_out
    # strict JSON: a NaN would not parse as a number here
    out = json.loads(run_cli("evaluate", "--model", small_bundle, "--data", path, "--json").stdout)  # strict JSON: a NaN would not parse as a number here
    assert set(out["models"]) == {"toollat", "per_tool_median", "per_command_mean", "global_median"}
    for m in out["models"].values():
        assert set(NEW) <= set(m)
        assert m["decision_cost"] >= out["decision"]["oracle_cost"] > 0
    assert out["models"]["per_tool_median"]["decision_gap_closed"] == 0.0
    assert out["decision"]["costs"]["breakeven_s"] == 30.0 and out["decision"]["fair_policy"] == "per_tool_median"
    # toollat's decision_cost is what the Predictor's own hints cost on these calls
    frame = Predictor.load(small_bundle).predict_frame(test)
    from toollat.hints import Hint

    by_hand = np.mean([_by_the_docstring(Hint(a, t, th), w / 1000.0, COSTS) for a, t, th, w in
                       zip(frame.hint_action, frame.hint_ttl_ms, frame.hint_then, frame.wall_ms)])
    assert out["models"]["toollat"]["decision_cost"] == pytest.approx(by_hand, rel=1e-9)

    table = run_cli("evaluate", "--model", small_bundle, "--data", path, env={**os.environ, "COLUMNS": "160"})
    for name in NEW:
        assert name in table.stdout
    assert "the oracle's" in table.stdout


def test_simulate_headline_names_decision_gap_closed(small_bundle, held_out):
    from toollat.predictor import Predictor
    from toollat.simulation.replay import simulate_bundle

    _, test = held_out
    result = simulate_bundle(Predictor.load(small_bundle), test)
    tool = {k: result.policies[k]["by_kind"]["tool"]["cost_ratio"] for k in ("toollat", "per_tool", "oracle")}
    h = result.headline["decision_gap_closed"]
    assert h is not None and h == decision_gap_closed(tool["toollat"], tool["per_tool"], tool["oracle"])
    assert tool["oracle"] <= min(tool["toollat"], tool["per_tool"])
