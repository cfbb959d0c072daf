"""Explicit durations bound predictions (toollat/models/bounds.py): sleeps from below, timeouts
and yield windows from above, within what each harness does with them (measured in the corpus)."""
from __future__ import annotations

import numpy as np
import pytest

from toollat.estimator import ToolLatencyModel
from toollat.models.bounds import DurationBounds
from toollat.predictor import Predictor


@pytest.fixture(scope="module")
def predictor(small_bundle, embedder):
    return Predictor(ToolLatencyModel.load(small_bundle, embedder))


def test_apply_by_hand():
    b = DurationBounds()
    levels = (0.1, 0.5, 0.9, 0.99)
    q = np.log10(np.array([[0.1, 1.0, 10.0, 100.0], [0.1, 1.0, 10.0, 100.0]]))
    out = 10 ** b.apply(levels, q, np.array([5.0, 0.0]), np.array([np.inf, 3.0]))
    np.testing.assert_allclose(out[0], [5.0, 5.0, 10.0, 100.0])
    np.testing.assert_allclose(out[1], [0.1, 1.0, 3.0, 100.0])   # the top level keeps the wait tail


def test_foreground_sleep_bounds_from_below(predictor):
    for tool, cmd, s in (("Bash", "sleep 12 && echo hi", 12.0), ("shell", "sleep 300 && make", 300.0)):
        pr = predictor.predict({"tool": tool, "args": {"command": cmd}})
        assert min(pr.quantiles.values()) >= s * 1000.0 * 0.999, (tool, pr.quantiles)
    long = predictor.predict({"tool": "shell", "args": {"command": "sleep 300 && make"}})
    assert long.p_long >= 0.9 and not (long.hint.action == "keep" and long.hint.ttl_ms < 60_000)


def test_background_and_loop_sleeps_do_not(predictor):
    for args in ({"command": "sleep 30", "run_in_background": True}, {"command": "sleep 30 &"},
                 {"command": "until test -f x; do sleep 30; done"}):
        pr = predictor.predict({"tool": "PowerShell", "args": args})
        assert pr.p50_ms < 30_000, args


def test_harness_rules(predictor):
    codex = predictor.predict({"tool": "exec_command", "args": {"cmd": "sleep 90; ls", "yield_time_ms": 60000}})
    assert 29_000 <= codex.p50_ms <= 32_000 and codex.p90_ms <= 32_000  # returns at the 30 s yield cap
    refused = predictor.predict({"tool": "Bash", "args": {"command": "sleep 90 && gh pr checks 1"}})
    assert refused.p50_ms < 90_000  # Claude Code refuses a 90 s sleep at once


def test_timeout_bounds_from_above(predictor):
    free = predictor.predict({"tool": "Bash", "args": {"command": "sleep 8; pytest -x tests/"}})
    capped = predictor.predict({"tool": "Bash", "args": {"command": "sleep 8; pytest -x tests/", "timeout": 3000}})
    assert free.p50_ms >= 7999 and capped.p90_ms <= 5001 and capped.p50_ms <= 5001
