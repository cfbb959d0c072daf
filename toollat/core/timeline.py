"""The session timeline: when a call is emitted, when its result becomes visible, and the waits
for the human between turns. Training's history replay, the prequential evaluation and the
estimator's human-wait distribution all read time through here.

**The visibility rule** (``visible_ms``): a call's result becomes visible to the calls of its
session once it arrived (``emitted + wall``) *and* its whole parallel group was emitted (the
agent sends a group's calls in one message and reads their results together), so a call never
sees its own group's results or anything later (docs/ARCHITECTURE.md, "Causality").

``events`` orders emissions and visible results in time, an emission first at equal times (a
call never sees a result that arrives at its own instant). ``human_waits`` is the wait before
each user turn: from the previous turn's end to the turn's start, where both are known (main
agent only), the definition ``simulation.gaps`` uses for its human gaps.
"""
from __future__ import annotations

from collections.abc import Iterator

from typing import TYPE_CHECKING

import numpy as np

from toollat.core.timestamps import epoch_ms

if TYPE_CHECKING:  # tables come from training and evaluation; serving never imports pandas
    import pandas as pd


def visible_ms(sessions, groups, emitted_ms: np.ndarray, wall_ms: np.ndarray) -> np.ndarray:
    """When each call's result becomes visible in its session (epoch ms; NaN if it never arrives)."""
    import pandas as pd

    emitted = np.asarray(emitted_ms, dtype=np.float64)
    frame = pd.DataFrame({"s": np.asarray(sessions), "g": pd.Series(groups, dtype=object).fillna("").to_numpy(),
                          "e": emitted})
    group_last = frame.groupby(["s", "g"], sort=False)["e"].transform("max").to_numpy()
    return np.maximum(emitted + np.asarray(wall_ms, dtype=np.float64), group_last)


def in_emission_order(labels, emitted_ms: np.ndarray) -> Iterator[np.ndarray]:
    """Row indices of each label (a session, a project), in emission order (ties: row order)."""
    import pandas as pd

    n = len(labels)
    codes, _ = pd.factorize(pd.Series(labels))
    order = np.lexsort((np.arange(n), emitted_ms, codes))
    sorted_codes = codes[order]
    bounds = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield order[a:b]


EMIT, VISIBLE = 0, 1


def events(idx, emitted_ms: np.ndarray, visible: np.ndarray) -> list[tuple[float, int, int]]:
    """``(time, EMIT | VISIBLE, row)`` of these rows in time order; at equal times an emission
    comes first, then the rows in the order given. A result that never arrives is left out."""
    ev = [(emitted_ms[i], EMIT, k, i) for k, i in enumerate(idx)]
    ev += [(visible[i], VISIBLE, k, i) for k, i in enumerate(idx) if visible[i] == visible[i]]
    ev.sort()
    return [(t, kind, i) for t, kind, _, i in ev]


def human_waits(df: pd.DataFrame) -> pd.DataFrame:
    """One row per user turn whose start and the previous turn's end are known (main agent
    only): ``session_id``, ``gap_s`` (clipped at 0). Its first call (earliest emission) names it."""
    import pandas as pd

    if not {"turn_started_at", "prev_turn_ended_at"} <= set(df.columns) or len(df) == 0:
        return pd.DataFrame({"session_id": pd.Series(dtype=object), "gap_s": pd.Series(dtype="float64")})
    emitted = epoch_ms(df["emitted_at"])
    started = epoch_ms(df["turn_started_at"])
    prev_end = epoch_ms(df["prev_turn_ended_at"])
    side = df["is_sidechain"].fillna(False).astype(bool).to_numpy() if "is_sidechain" in df else np.zeros(len(df), bool)
    main = ~side & ~np.isnan(emitted) & ~np.isnan(started) & ~np.isnan(prev_end)
    turns = pd.DataFrame({"session_id": df["session_id"].astype("string").fillna("").to_numpy()[main],
                          "started": started[main], "emitted": emitted[main], "prev_end": prev_end[main]})
    first = turns.sort_values(["session_id", "started", "emitted"], kind="stable").drop_duplicates(
        ["session_id", "started"], keep="first")
    gap_s = np.maximum((first["started"].to_numpy() - first["prev_end"].to_numpy()) / 1000.0, 0.0)
    return pd.DataFrame({"session_id": first["session_id"].to_numpy(dtype=object), "gap_s": gap_s})


__all__ = ["visible_ms", "in_emission_order", "events", "EMIT", "VISIBLE", "human_waits"]
