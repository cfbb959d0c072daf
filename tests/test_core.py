"""The core layer's shared definitions (toollat/core/): the visibility rule on hand-made calls,
the human waits equal to the simulation's human gaps on real calls, and the session folds."""
from __future__ import annotations

import numpy as np
import pandas as pd

from toollat.core.hashing import code, session_fold
from toollat.core.timeline import EMIT, VISIBLE, events, human_waits, visible_ms


def test_a_result_is_visible_once_it_arrived_and_its_group_was_emitted():
    sessions = np.array(["s", "s", "s", "t"])
    groups = pd.Series(["g1", "g1", "g2", "g1"])
    emitted = np.array([0.0, 500.0, 600.0, 0.0])
    wall = np.array([100.0, 100.0, 1000.0, 50.0])
    # call 0 arrived at 100 but its group's second call was emitted at 500; t's g1 is its own group
    np.testing.assert_array_equal(visible_ms(sessions, groups, emitted, wall), [500.0, 600.0, 1600.0, 50.0])
    # at equal times an emission comes first: call 2 (emitted at 600) does not see call 1 (visible at 600)
    order = events(np.arange(3), emitted[:3], visible_ms(sessions[:3], groups[:3], emitted[:3], wall[:3]))
    assert order.index((600.0, EMIT, 2)) < order.index((600.0, VISIBLE, 1))


def test_human_waits_are_the_simulations_human_gaps(small_calls):
    from toollat.simulation import build_gaps

    gaps = build_gaps(small_calls).frame
    human = gaps[gaps["kind"] == "human"]
    mine = human_waits(small_calls)
    assert len(mine) == len(human) > 20
    np.testing.assert_allclose(np.sort(mine["gap_s"].to_numpy()), np.sort(human["gap_s"].to_numpy()))
    assert sorted(mine["session_id"]) == sorted(human["session_id"].astype(str))


def test_session_folds_are_the_hash_of_the_id():
    ids = ["a", "b", "c", 7]
    assert session_fold(ids, 5).tolist() == [code(str(s)) % 5 for s in ids]
    assert session_fold(ids, 10_000, salt="3").tolist() == [code(f"3\x1f{s}") % 10_000 for s in ids]
