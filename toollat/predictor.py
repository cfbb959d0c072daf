"""The Predictor a scheduler imports.

```python
from toollat import Predictor
p = Predictor.load("default")                       # or a bundle directory
pr = p.predict({"tool": "Bash", "args": {"command": "pytest -x"}, "session_id": "s1", "call_id": "c1"})
pr.p50_ms, pr.p90_ms, pr.quantiles, pr.p_long, pr.hint.action, pr.hint.ttl_ms
p.predict_batch([...])
p.observe(call_id="c1", latency_ms=5300)            # or observe(session_id="s1", tool="Bash", latency_ms=...)
```

A call is a dict: ``tool`` (required), ``args`` (object or JSON text), and optionally
``call_id``, ``session_id``, ``agent``, ``model``, ``permission_mode``, ``emitted_at`` (epoch ms
or ISO; default now), ``turn_started_at``, ``prev_turn_ended_at``, ``turn_index``,
``context_tokens``, ``parallel_group``, ``poll_of``. ``Predictor(model)`` wraps a fitted
``ToolLatencyModel``; ``Predictor.load`` loads one. Each session's history lives in memory,
bounded: at most ``max_sessions`` sessions, least recently used evicted first, and at most
``max_pending`` predicted calls awaiting their result. ``observe`` feeds results back, which
later predictions of the session use, and keeps a running calibration (coverage of p50/p90 by
family). All methods are thread-safe.
"""
from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from toollat.estimator import ToolLatencyModel
from toollat.features.calls import Call
from toollat.features.context import HistoryKeys, ProjectHistory, SessionHistory
from toollat.features.embed import Embedder
from toollat.hints import Hint, HintCosts, decide_plans
from toollat.ingest.families import tool_family
from toollat.jsonio import dumps_bytes
from toollat.online import GLOBAL_PROJECT, AdaptiveShift, OnlineConfig
from toollat.units import LONG_MS, level_names, p_exceeds, prediction_columns, to_log, to_ms

if TYPE_CHECKING:
    import pandas as pd

MAX_LATENCY_MS = 7 * 24 * 3600 * 1000.0  # an observed latency beyond a week is not believed


@dataclass(frozen=True)
class LatencyPrediction:
    call_id: str | None
    p50_ms: float
    p90_ms: float
    quantiles: dict[str, float]        # {"p10": ms, "p50": ms, "p90": ms, "p99": ms}
    p_long: float                      # probability the call takes at least 60 s (consistent with the quantiles)
    hint: Hint
    fallback: str | None = None        # "family" / "global" when the tool was never seen in training
    model_version: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = {"call_id": self.call_id, "p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "quantiles": self.quantiles,
             "p_long": self.p_long, "hint": {"action": self.hint.action, "ttl_ms": self.hint.ttl_ms}}
        if self.hint.then:
            d["hint"]["then"] = self.hint.then
        if self.fallback:
            d["fallback"] = self.fallback
        return d


@dataclass
class _Pending:
    session_id: str | None
    keys: tuple
    family: str
    q_log: np.ndarray    # the quantiles served (log10 s), for calibration
    expected: float      # the memory's estimate, for the session's residual features
    project: str | None  # the project store it feeds (None: none)


@dataclass
class _Coverage:
    n: int = 0
    under_p50: int = 0
    under_p90: int = 0

    def to_dict(self) -> dict[str, float]:
        return {"n": self.n, "coverage_p50": self.under_p50 / self.n if self.n else None,
                "coverage_p90": self.under_p90 / self.n if self.n else None}


@dataclass
class _Calibration:
    by_family: dict[str, _Coverage] = field(default_factory=dict)

    def add(self, family: str, y: float, p50: float, p90: float) -> None:
        for key in (family, "*"):
            c = self.by_family.setdefault(key, _Coverage())
            c.n += 1
            c.under_p50 += y <= p50
            c.under_p90 += y <= p90


class Predictor:
    def __init__(self, model: ToolLatencyModel, max_sessions: int = 10_000, max_pending: int = 100_000,
                 costs: HintCosts | None = None):
        model._require_fitted()
        self.model = model
        self.pipeline = model.pipeline_
        self._latency = model.model_
        self.costs = costs or model.hint_costs
        self.max_sessions = max_sessions
        self.max_pending = max_pending
        self.levels = model.levels_
        self.level_names = level_names(self.levels)
        self._i50 = self.levels.index(0.5)
        self._i90 = self.levels.index(0.9) if 0.9 in self.levels else len(self.levels) - 1
        self._sessions: OrderedDict[str, SessionHistory] = OrderedDict()
        self._pending: OrderedDict[str, _Pending] = OrderedDict()
        self._calibration = _Calibration()
        self._lock = threading.RLock()
        names = self.pipeline.names  # a computed list: read once, not per prediction
        self._n_features = len(names)
        self._expected_col = names.index("m_knn_y") if "m_knn_y" in names else None
        self._known_tools = self.pipeline.vocabs.get("c_tool")
        self.counts = {"predicted": 0, "observed": 0, "observed_unknown": 0, "evicted_sessions": 0}
        online = OnlineConfig.from_dict(model.online)
        self.online = online
        self._uses_projects = self.pipeline.config.project
        self._projects: OrderedDict[str, ProjectHistory] = OrderedDict()
        self._aci = AdaptiveShift(self.levels, online.aci_step, online.aci_max_shift) if online.aci_step > 0 else None

    @classmethod
    def load(cls, name_or_path: str | Path = "default", embedder: Embedder | None = None, **kw) -> "Predictor":
        """A bundle directory, a name under ``models/``, or ``default`` (shipped with the package)."""
        return cls(ToolLatencyModel.load(name_or_path, embedder), **kw)

    # -- info ---------------------------------------------------------------------------------
    @property
    def name(self) -> str:
        return self.model.card_.get("name", self.model.name)

    @property
    def model_version(self) -> str:
        return self.model.version_

    def model_info(self) -> dict[str, Any]:
        card = self.model.card_
        held = card.get("metrics", {}).get("held_out_sessions", {}).get("models", {})
        with self._lock:
            calibration = {k: v.to_dict() for k, v in sorted(self._calibration.by_family.items())}
            sessions = len(self._sessions)
            pending = len(self._pending)
        info = {
            "name": self.name, "version": self.model_version, "created": card.get("created"),
            "target": self.model.target, "tools": self.model.tools, "levels": list(self.levels),
            "hints": {"breakeven_s": self.costs.breakeven_s, "offload_cost_s": self.costs.offload_cost_s,
                      "offload_hold_ratio": self.costs.offload_hold_ratio},
            "held_out_metrics": held.get("toollat"),
            "running_calibration": calibration,
            "online_shifts": self._aci.to_dict() if self._aci is not None else None,
            "state": {"sessions": sessions, "max_sessions": self.max_sessions, "pending": pending,
                      "projects": len(self._projects), "max_projects": self.online.max_projects, **self.counts},
        }
        return orjson.loads(dumps_bytes(info))  # strict JSON values (NaN -> None)

    # -- predicting ---------------------------------------------------------------------------
    def _session(self, sid: str | None) -> SessionHistory | None:
        if sid is None:
            return None
        h = self._sessions.get(sid)
        if h is None:
            h = self._sessions[sid] = SessionHistory()
            if len(self._sessions) > self.max_sessions:
                self._sessions.popitem(last=False)
                self.counts["evicted_sessions"] += 1
        else:
            self._sessions.move_to_end(sid)
        return h

    def _project(self, name: str) -> ProjectHistory:
        """The cross-session store of a project (least recently used dropped past ``max_projects``)."""
        p = self._projects.get(name)
        if p is None:
            p = self._projects[name] = ProjectHistory()
            if len(self._projects) > self.online.max_projects:
                self._projects.popitem(last=False)
        else:
            self._projects.move_to_end(name)
        return p

    def _fallback(self, call: Call) -> str | None:
        if self._known_tools is None or self._known_tools.encode(call.tool):
            return None
        return "family" if call.family != "other" else "global"

    def predict(self, call: dict[str, Any]) -> LatencyPrediction:
        return self.predict_batch([call])[0]

    def predict_batch(self, calls: list[dict[str, Any]]) -> list[LatencyPrediction]:
        """Predictions in order; each call is recorded as emitted in its session (in order)."""
        return self.predict_calls([Call.from_request(c) for c in calls])

    def predict_calls(self, parsed: list[Call]) -> list[LatencyPrediction]:
        """``predict_batch`` for calls already parsed (``features.calls.Call``)."""
        now = time.time() * 1000.0
        rows = np.empty((len(parsed), self._n_features), dtype=np.float32)
        keys = []
        expected = []
        projects = [(c.project or GLOBAL_PROJECT) if self._uses_projects else None for c in parsed]
        with self._lock:
            for i, call in enumerate(parsed):
                t = call.emitted_ms if call.emitted_ms is not None else now
                hist = self._session(call.session_id)
                proj = self._project(projects[i]) if projects[i] is not None else None
                row, k = self.pipeline.online_row(call, hist, t, proj)
                rows[i] = row
                keys.append(k)
                exp = float(row[self._expected_col]) if self._expected_col is not None else float("nan")
                expected.append(exp)
                if hist is not None:
                    hist.emit(call, k, t, exp)
        families = [c.family for c in parsed]
        pred = self.model.predict_matrix({"tool_family": families, "tool_name": [c.tool for c in parsed]}, rows)
        q_log, p_long = pred.quantiles, pred.p_long
        if self._aci is not None:
            with self._lock:
                q_log = self._aci.apply(q_log, families)
            p_long = p_exceeds(self.levels, to_ms(q_log), LONG_MS, p_long)
        ms = to_ms(q_log)
        actions, ttls, thens = decide_plans(self.levels, ms, self.costs)
        out = []
        with self._lock:
            for i, call in enumerate(parsed):
                if call.call_id is not None:
                    self._pending[call.call_id] = _Pending(call.session_id, keys[i], call.family, q_log[i],
                                                           expected[i], projects[i])
                    if len(self._pending) > self.max_pending:
                        self._pending.popitem(last=False)
            self.counts["predicted"] += len(parsed)
        for i, call in enumerate(parsed):
            q = {n: float(v) for n, v in zip(self.level_names, ms[i])}
            out.append(LatencyPrediction(call.call_id, q.get("p50", float(ms[i][0])), q.get("p90", float(ms[i][-1])), q,
                                         float(p_long[i]), Hint(actions[i], float(ttls[i]), thens[i]),
                                         self._fallback(call), self.model_version))
        return out

    def predict_frame(self, df: "pd.DataFrame", progress: bool = False) -> "pd.DataFrame":
        """Predictions for every call of a canonical table, each session replayed causally from
        an empty history (what serving it call by call would give; tested equal). Adds
        ``pred_p10_ms .. pred_p99_ms``, ``pred_p_long``, ``hint_action``, ``hint_ttl_ms`` and
        ``hint_then``. Calls outside the model's tool scope get its per-tool median baseline."""
        pred = self.model.predict(df, progress=progress)
        out = df.copy()
        for col in pred.columns:
            out[col] = pred[col].to_numpy()
        ms = pred[prediction_columns(self.levels)].to_numpy()
        out["hint_action"], out["hint_ttl_ms"], out["hint_then"] = decide_plans(self.levels, ms, self.costs)
        return out

    def predict_human_gap(self, agent: str | None = None) -> LatencyPrediction | None:
        """The hint for the wait after an agent's turn (a human thinking, typing, away).

        Not a per-call prediction: the training distribution of waits before human turns, for
        this agent if the bundle has it; None if the bundle has no such distribution."""
        dist = self.model.human_gaps_
        if not dist:
            return None
        ms = np.asarray(dist["ms"].get(agent or "*", dist["ms"]["*"]), dtype=np.float64)
        levels = tuple(dist["levels"])
        actions, ttls, thens = decide_plans(levels, ms[None, :], self.costs)
        q = dict(zip(level_names(levels), ms.tolist()))
        p_long = float(p_exceeds(levels, ms[None, :], LONG_MS)[0])
        return LatencyPrediction(None, q.get("p50", float(ms[0])), q.get("p90", float(ms[-1])), q, p_long,
                                 Hint(actions[0], float(ttls[0]), thens[0]), None, self.model_version)

    # -- observing ----------------------------------------------------------------------------
    def observe(self, call_id: str | None = None, latency_ms: float | None = None, session_id: str | None = None,
                tool: str | None = None, is_error: bool = False, at_ms: float | None = None) -> bool:
        """A result arrived. Identify the call by ``call_id`` (as predicted), or by ``session_id``
        and ``tool``. Returns False if the call is unknown (nothing is recorded then)."""
        if latency_ms is None or not isinstance(latency_ms, (int, float)) or not 0 <= latency_ms <= MAX_LATENCY_MS:
            raise ValueError(f"latency_ms must be a number in [0, {MAX_LATENCY_MS:.0f}]")
        at = at_ms if at_ms is not None else time.time() * 1000.0

        with self._lock:
            pend = self._pending.pop(call_id, None) if call_id is not None else None
            if pend is not None:
                sid, keys = pend.session_id, pend.keys
                y = to_log(latency_ms)
                self._calibration.add(pend.family, y, float(pend.q_log[self._i50]), float(pend.q_log[self._i90]))
                if self._aci is not None:
                    self._aci.update(pend.family, y, pend.q_log)
            elif session_id is not None and tool:
                sid, keys = session_id, HistoryKeys.for_tool(tool, tool_family(tool))
            else:
                self.counts["observed_unknown"] += 1
                return False
            hist = self._sessions.get(sid) if sid is not None else None
            if hist is None and sid is not None:
                hist = self._session(sid)
            if hist is not None:
                hist.observe(keys, float(latency_ms), is_error, at_ms=at, call_id=call_id,
                             expected=pend.expected if pend is not None else float("nan"))
            if pend is not None and pend.project is not None:
                self._project(pend.project).observe(keys, float(latency_ms), is_error)
            self.counts["observed"] += 1
            return True

    def reset(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._pending.clear()
            self._projects.clear()
            self._calibration = _Calibration()
            if self._aci is not None:
                self._aci.reset()
            self.counts = dict.fromkeys(self.counts, 0)


__all__ = ["Predictor", "LatencyPrediction"]
