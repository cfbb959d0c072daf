"""The model of the tail (issue 19): the tail feature groups served call by call equal the
training pipeline's; exceedance classifiers at the decision thresholds bound the quantiles
(``lgbm.exceedance_quantiles``), survive a bundle, and the one-row path equals the batch one.
Causality of the tail groups: tests/test_features.py (its ``tail`` configuration)."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import FAST_MODEL, small_config
from test_predictor import replay_online
from toollat.core.units import LONG_MS, p_exceeds, to_ms
from toollat.estimator import ToolLatencyModel
from toollat.models.lgbm import exceedance_quantiles
from toollat.predictor import Predictor

TAIL = {"project": True, "approval": True, "subagents": True, "polls": True}
EXCEED = {**FAST_MODEL, "exceed_s": [10.0, 30.0, 300.0], "exceed_params": {"n_estimators": 20, "num_leaves": 7}}
LEVELS = (0.1, 0.5, 0.9, 0.99)


@pytest.fixture(scope="module")
def tail_model(small_split, embedder):
    train, _ = small_split
    cfg = small_config(model=EXCEED)
    cfg["features"] = {**cfg["features"], **TAIL}
    return ToolLatencyModel.from_config(cfg, embedder).fit(train)


def test_tail_features_served_call_by_call_equal_the_batch(tail_model, small_split):
    _, test = small_split
    p = Predictor(tail_model)
    names = tail_model.pipeline_.names
    assert {"ap_cls_wait_rate", "ap_since_human_s", "j_sub_min", "sa_fg_mean", "bg_left_s", "c_perm_fam"} <= set(names)
    for sid in test["session_id"].drop_duplicates().head(4):
        s = test[test.session_id == sid].sort_values("seq").reset_index(drop=True)
        p.reset()
        online = replay_online(p, s)
        batch = tail_model.pipeline_.transform(s)
        bad = [n for j, n in enumerate(names) if not np.allclose(online[:, j], batch[:, j], equal_nan=True, atol=1e-5)]
        assert not bad, f"online and batch differ in {bad}"


def _brackets_hold(q: np.ndarray, t: np.ndarray, p: np.ndarray) -> bool:
    """Level l's quantile is at or above threshold t_k iff P(< t_k) < l (the CDF sorted first)."""
    cdf = 1.0 - (-np.sort(-p, axis=1))
    for j, level in enumerate(LEVELS):
        for k in range(len(t)):
            above = cdf[:, k] < level
            if (q[above, j] < t[k] - 1e-9).any() or (q[~above, j] > t[k] + 1e-9).any():
                return False
    return True


@pytest.mark.parametrize("how", ["clip", "interp"])
def test_exceedance_bounds_the_quantiles(how):
    rng = np.random.default_rng(3)
    q = np.sort(rng.normal(0.0, 1.2, (2000, 4)), axis=1)
    t = np.log10([10.0, 30.0, 60.0, 300.0])
    p = rng.uniform(0, 1, (2000, 4)) ** 3
    assert not _brackets_hold(q, t, p)                                   # the check can fail
    out = exceedance_quantiles(LEVELS, q, t, p, how)
    assert _brackets_hold(out, t, p)
    assert (np.diff(out, axis=1) >= -1e-12).all()
    cdf = 1.0 - (-np.sort(-p, axis=1))
    inside = np.ones(len(q), bool)
    for j, level in enumerate(LEVELS):   # rows whose quantiles are all inside their brackets stay as they are
        m = (cdf < level).sum(axis=1)
        lo = np.where(m > 0, t[np.maximum(m - 1, 0)], -np.inf)
        hi = np.where(m < len(t), t[np.minimum(m, len(t) - 1)], np.inf)
        inside &= (q[:, j] >= lo) & (q[:, j] <= hi)
    assert inside.any() and np.array_equal(out[inside], q[inside])
    assert np.array_equal(exceedance_quantiles(LEVELS, q, t, p, "none"), q)


def test_exceedance_heads_shape_the_prediction_and_survive_a_bundle(tail_model, small_split, embedder, tmp_path):
    _, test = small_split
    m = tail_model.model_
    assert len(m.exceed) == 3 and m.exceed_s == (10.0, 30.0, 300.0)
    X = tail_model.features_for(test)
    q_raw, p_long, e = m.raw(X)
    assert e.shape == (len(test), 3) and ((e >= 0) & (e <= 1)).all()
    pred = m.predict(test, X)
    p = np.column_stack([e[:, 0], e[:, 1], p_long, e[:, 2]])            # thresholds ascending: 10, 30, 60, 300 s
    assert _brackets_hold(pred.quantiles, np.log10([10.0, 30.0, 60.0, 300.0]), p)
    assert not np.array_equal(pred.quantiles, m.calibrated(q_raw, list(test["tool_family"])))   # they moved some
    # p_long agrees with the sharpened quantiles (estimator.predict_matrix)
    out = tail_model.predict_log(test, X)
    assert np.allclose(out.p_long, p_exceeds(LEVELS, to_ms(out.quantiles), LONG_MS, out.p_long))
    # the one-row path (serving) equals the batch path
    for i in range(0, len(test), max(1, len(test) // 25)):
        one = m.predict(test.iloc[[i]], X[i:i + 1])
        assert np.allclose(one.quantiles, pred.quantiles[i:i + 1]) and np.isclose(one.p_long[0], pred.p_long[i])
    path = tail_model.save(tmp_path / "tail")
    loaded = ToolLatencyModel.load(path, embedder)
    assert loaded.model_.exceed_s == m.exceed_s
    np.testing.assert_allclose(loaded.predict(test).to_numpy(), tail_model.predict(test).to_numpy())
