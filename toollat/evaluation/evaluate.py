"""Score a model beside the baselines on the same calls: one dict, used by training, the
``toollat evaluate`` command and the experiments alike.

``report(...)`` returns ``{"n": int, "models": {name: metrics}, "per_family": {name: {family:
metrics}}, "decision": {...}}``; model names are ``toollat``, ``per_tool_median``,
``per_command_mean`` and ``global_median``. ``decision`` states what ``decision_cost`` is
measured in, the hint costs, the fair per-tool policy (``per_tool_median``'s quantiles through
the same hint rule) and the oracle's cost on the same calls. ``evaluate`` treats every call of
the data as unseen (each session replayed from an empty history); ``held_out`` and
``leave_one_source_out`` fit a fresh model per split (on any executor), so training and the
experiments evaluate the same way.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from toollat.estimator import BASELINE_ORDER, MODEL, ToolLatencyModel, in_scope  # noqa: F401

from .report import pool_predictions, report
from .splits import session_test_mask, source_masks


def evaluate(model: ToolLatencyModel, df: pd.DataFrame, progress: bool = False) -> dict[str, Any]:
    """Score a fitted model and its baselines on ``df`` (all calls unseen; within the model's scope)."""
    out = report(*model.scored(df, progress=progress), costs=model.hint_costs)
    out["scope"] = model.tools or {"families": None, "names": None}
    return out


def _scorer(online: bool):
    if online:
        from .prequential import prequential_scored

        return prequential_scored
    return lambda model, df, progress=False: model.scored(df, progress=progress)


def held_out(df: pd.DataFrame, make_model: Callable[[], ToolLatencyModel], test_fraction: float, seed: int,
             progress: bool = False, online: bool = False, executor=None) -> tuple[ToolLatencyModel, dict[str, Any], tuple]:
    """Fit on the sessions not held out (on ``executor``, ``toollat.executor``), score on the
    held-out ones in this process (grouped by session; prequentially with ``online``). Returns the
    fitted model, the report, and ``(calls, y_ms, predictions)`` for plots."""
    test = session_test_mask(df["session_id"], test_fraction, seed)
    model = make_model().fit(df[~test].reset_index(drop=True), executor=executor, progress=progress)
    scored = _scorer(online)(model, df[test].reset_index(drop=True), progress=progress)
    return model, report(*scored, costs=model.hint_costs), scored


def leave_one_source_out(df: pd.DataFrame, make_model: Callable[[], ToolLatencyModel],
                         on_source: Callable[[str, dict[str, Any]], None] | None = None,
                         online: bool = False, executor=None) -> dict[str, Any] | None:
    """Hold out each source in turn (a model fit on the others), pool the predictions; None if
    the data has fewer than two sources. ``per_source`` holds each source's own report. With
    ``online`` each held-out source is replayed prequentially (``evaluation.prequential``)."""
    score = _scorer(online)
    parts, frames, per_source = [], [], {}
    costs = make_model().hint_costs
    for src, mask in source_masks(df["source"]):
        if mask.all():
            continue
        model = make_model()
        if not in_scope(df[mask], model.tools).any():
            continue
        model.fit(df[~mask].reset_index(drop=True), executor=executor)
        calls, y, preds = score(model, df[mask].reset_index(drop=True))
        if len(calls) == 0:
            continue
        parts.append(preds)
        frames.append((calls, y))
        per_source[src] = report(calls, y, preds, costs=costs)["models"]
        if on_source is not None:
            on_source(src, per_source[src])
    if not parts:
        return None
    rep = report(pd.concat([c for c, _ in frames], ignore_index=True), np.concatenate([y for _, y in frames]),
                 pool_predictions(parts), costs=costs)
    rep["per_source"] = per_source
    return rep
