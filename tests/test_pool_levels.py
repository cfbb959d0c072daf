"""The KV simulations read their quantile levels from the model (issue 21): a bundle trained at
non-default levels replays in the shared pool and in the per-gap simulation, on real sessions."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import small_config
from toollat.estimator import ToolLatencyModel
from toollat.predictor import Predictor
from toollat.simulation import build_gaps, prediction_columns_in
from toollat.simulation.policies import HintPolicy
from toollat.simulation.pool import Predicted, Timeline, replay, replay_bundle
from toollat.simulation.replay import simulate_bundle
from toollat.simulation.resume import PoolConfig
from toollat.core.units import prediction_columns

LEVELS = (0.25, 0.5, 0.75, 0.9, 0.95)   # not the default set (levels must hold 0.5 and 0.9)


@pytest.fixture(scope="module")
def odd_levels(small_split):
    """A static-embedder bundle at levels 0.25 .. 0.95, trained on 40 sessions; held-out calls."""
    train, test = small_split
    cfg = small_config(levels=list(LEVELS))
    cfg["features"] = {**cfg["features"], "embedder": "static"}
    keep = train["session_id"].isin(train["session_id"].drop_duplicates().iloc[:40])
    model = ToolLatencyModel.from_config(cfg).fit(train[keep].reset_index(drop=True))
    held = test[test["session_id"].isin(test["session_id"].drop_duplicates().iloc[:12])].reset_index(drop=True)
    return Predictor(model), held


def test_pool_replay_at_the_models_levels(odd_levels):
    predictor, held = odd_levels
    assert tuple(predictor.levels) == LEVELS
    res = replay_bundle(predictor, held, PoolConfig.load())
    assert res.data["levels"] == list(LEVELS)
    assert {"stall_gap_closed", "stall_gap_closed_per_tool"} <= set(res.headline)
    assert set(res.policies) == {"lru", "lru+host", "static_ttl", "continuum_ttl", "per_tool", "toollat", "belady"}
    json.dumps(res.to_dict(), allow_nan=False)
    # the gaps carry the model's own prediction columns
    cols = prediction_columns_in(build_gaps(predictor.predict_frame(held)).frame.columns)
    assert cols[:5] == prediction_columns(LEVELS) == ["pred_p25_ms", "pred_p50_ms", "pred_p75_ms", "pred_p90_ms",
                                                      "pred_p95_ms"]


def test_per_gap_simulation_at_the_models_levels(odd_levels):
    predictor, held = odd_levels
    res = simulate_bundle(predictor, held, ["static", "per_tool", "toollat", "oracle"])
    assert res.policies["toollat"]["fallback_gaps"] == 0        # every tool gap had its predictions
    assert 0 <= res.policies["toollat"]["hit_rate"] <= 1 and 0 <= res.policies["per_tool"]["hit_rate"] <= 1


def test_levels_are_checked():
    with pytest.raises(ValueError, match="include 0.5"):
        HintPolicy(levels=(0.1, 0.9))
    with pytest.raises(ValueError, match="3 quantile columns for 4 levels"):
        Predicted("x", np.ones((1, 3)))
    # three levels: support 1, 2, 3 s and the tail at 6 s, mass .2 .3 .3 .2: the mean 2.9 s
    tl = Timeline.of([("A", 0, 3, 16)])
    p = Predicted("x", np.array([[1e3, 2e3, 3e3]]), levels=(0.2, 0.5, 0.8), hints=False, rule="mean")
    assert p.support[0].tolist() == [1.0, 2.0, 3.0, 6.0]
    assert p.key(0, 0.0, 0.0, tl)[0][1] == pytest.approx(0.2 * 1 + 0.3 * 2 + 0.3 * 3 + 0.2 * 6)
    assert replay(tl, p, 16)["hit_rate"] == 1.0
