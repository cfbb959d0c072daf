"""Prequential evaluation (``toollat evaluate --online``): every call of the data in time order
across all its sessions, predicted by a ``Predictor`` when it is emitted and observed when its
result becomes visible, so whatever the Predictor learns while serving (session history, the
cross-session project memory, adaptive conformal shifts) counts, and nothing from the future
does. Results become visible by ``core.timeline``'s rule, and what each teaches the Predictor
is the model's target (``core.units.history_ms``), as in training. The baselines are scored on
the same calls: ``per_command_mean`` learns online too (its running means take each result as
it arrives), the medians are static. Same report shape as ``evaluate``.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from toollat.budget import MemoryBudget
from toollat.core.call import calls_from_frame
from toollat.core.timeline import EMIT, events, visible_ms
from toollat.core.units import history_ms, target_ms
from toollat.estimator import BASELINE_ORDER, MODEL, ToolLatencyModel, in_scope
from toollat.features.text import embed_text
from toollat.models import Prediction

from .report import report


def prequential_scored(model: ToolLatencyModel, df: pd.DataFrame, progress: bool = False):
    """``(calls, y_ms, {name: (Prediction, threshold)})`` like ``ToolLatencyModel.scored``, with the
    model's predictions made online in time order."""
    from toollat.predictor import MAX_LATENCY_MS, Predictor
    from toollat.progress import progress_bar

    df = df.reset_index(drop=True)
    calls = calls_from_frame(df)
    # no byte budget: a replay must not forget a session a server would have evicted
    p = Predictor(model, max_sessions=max(10_000, df["session_id"].nunique() + 1), max_pending=max(100_000, len(df) + 1),
                  memory=MemoryBudget(budget_mb=None))
    if model.pipeline_.config.uses_text:  # one batch encode instead of one text at a time
        model.pipeline_.embedder.encode(sorted({embed_text(c.tool, c.args) for c in calls}), progress=progress)
    emitted = np.array([c.emitted_ms for c in calls], dtype=np.float64)
    visible = visible_ms(df["session_id"].to_numpy(), df["parallel_group"], emitted, df["wall_ms"].to_numpy(dtype=np.float64))
    # what a result teaches the Predictor (its history and adaptive shifts): the model's target
    # where known, else the wall time, as training's history replay
    seen = history_ms(df, model.target)
    err = df["is_error"].to_numpy(dtype=bool) if "is_error" in df else np.zeros(len(df), bool)
    timeline = events(np.arange(len(df)), emitted, visible)
    q = np.empty((len(df), len(p.levels)))
    p_long = np.empty(len(df))
    ids = [c.call_id or f"row-{i}" for i, c in enumerate(calls)]
    for i, c in enumerate(calls):
        c.call_id = ids[i]
    with progress_bar(progress) as bar:
        task = bar.add_task("replaying calls online", total=len(timeline))
        for k, (t, kind, i) in enumerate(timeline):
            if kind == EMIT:
                pr = p.predict_calls([calls[i]])[0]
                q[i] = [pr.quantiles[n] for n in p.level_names]
                p_long[i] = pr.p_long
            else:
                p.observe(call_id=ids[i], latency_ms=float(min(max(seen[i], 0.0), MAX_LATENCY_MS)),
                          is_error=bool(err[i]), at_ms=t)
            if k % 2000 == 0:
                bar.update(task, completed=k)
    y = target_ms(df, model.target)
    keep = in_scope(df, model.tools) & ~np.isnan(y)
    sub = df[keep].reset_index(drop=True)
    preds = {MODEL: (Prediction(p.levels, np.log10(q[keep] / 1000.0), p_long[keep]), model.model_.long_threshold)}
    for name in BASELINE_ORDER:
        b = model.baselines_[name]
        preds[name] = (b.predict(sub, None), b.long_threshold)
    return sub, y[keep], preds


def evaluate_online(model: ToolLatencyModel, df: pd.DataFrame, progress: bool = False) -> dict[str, Any]:
    out = report(*prequential_scored(model, df, progress), costs=model.hint_costs)
    out["scope"] = model.tools or {"families": None, "names": None}
    out["mode"] = "online"
    return out
