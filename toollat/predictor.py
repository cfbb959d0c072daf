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
``ToolLatencyModel``; ``Predictor.load`` loads one. ``observe`` feeds results back, which
later predictions of the session use, and keeps a running calibration (coverage of p50/p90 by
family). All methods are thread-safe.

Everything clients grow lives within one memory budget (``toollat.budget.MemoryBudget``,
``conf/serving/default.yaml``): the sessions' history (least recently used session evicted
first; at most ``max_sessions``; one session at most ``session_kib``), the calls awaiting their
result (oldest dropped; at most ``max_pending``), the project stores, the feature cache and the
embedder's in-memory cache, each within its share, in bytes; ``memory_usage()`` and
``model_info()["memory"]`` report them. A session evicted and seen again starts empty.
"""
from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import orjson

from toollat.budget import FLOAT, NDARRAY, ODICT_SLOT, MemoryBudget, keys_bytes, str_bytes, tuple_bytes
from toollat.estimator import ToolLatencyModel
from toollat.features.calls import Call
from toollat.features.context import HistoryKeys, ProjectHistory, SessionHistory
from toollat.features.embed import Embedder
from toollat.hints import Hint, HintCosts, decide_plans, plan_costs
from toollat.core.families import tool_family
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
    costs: dict[str, Any] | None = None  # with explain=True: each plan's expected cost (hints.plan_costs)

    def to_dict(self) -> dict[str, Any]:
        d = {"call_id": self.call_id, "p50_ms": self.p50_ms, "p90_ms": self.p90_ms, "quantiles": self.quantiles,
             "p_long": self.p_long, "hint": {"action": self.hint.action, "ttl_ms": self.hint.ttl_ms}}
        if self.hint.then:
            d["hint"]["then"] = self.hint.then
        if self.fallback:
            d["fallback"] = self.fallback
        if self.costs is not None:
            d["costs"] = self.costs
        return d


class _Pending(NamedTuple):
    """A call predicted and awaiting its result. Stored as a plain tuple (``_Pending(...)[:]``
    would be one too): the garbage collector stops tracking a tuple of untracked items, never a
    named tuple, and up to ``max_pending`` of these are held."""

    session_id: str | None
    keys: tuple
    family: str
    q_log: np.ndarray    # the quantiles served (log10 s), for calibration (a copy: a view would hold the batch)
    expected: float      # the memory's estimate, for the session's residual features
    project: str | None  # the project store it feeds (None: none)


def _pending_bytes(call_id: str, p: tuple) -> int:
    """Upper bound of what an entry holds besides its table slot (toollat/budget.py); the family is
    an interned name."""
    sid, keys, _, q_log, _, project = p
    return (tuple_bytes(6) + FLOAT + str_bytes(call_id) + str_bytes(sid) + keys_bytes(keys) + NDARRAY + q_log.nbytes
            + str_bytes(project))


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
    def __init__(self, model: ToolLatencyModel, max_sessions: int | None = None, max_pending: int | None = None,
                 costs: HintCosts | None = None, memory: MemoryBudget | None = None):
        """``memory``: the budget of what clients grow (default ``conf/serving/default.yaml``'s);
        ``max_sessions`` / ``max_pending`` override its entry caps."""
        model._require_fitted()
        memory = memory or MemoryBudget()
        caps = {k: v for k, v in (("max_sessions", max_sessions), ("max_pending", max_pending)) if v is not None}
        self.memory = dataclasses.replace(memory, **caps) if caps else memory
        self.model = model
        self.pipeline = model.pipeline_
        self._latency = model.model_
        self.costs = costs or model.hint_costs
        self.max_sessions = self.memory.max_sessions
        self.max_pending = self.memory.max_pending
        self.levels = model.levels_
        self.level_names = level_names(self.levels)
        self._i50 = self.levels.index(0.5)
        self._i90 = self.levels.index(0.9) if 0.9 in self.levels else len(self.levels) - 1
        self._sessions: OrderedDict[str, SessionHistory] = OrderedDict()
        self._pending: OrderedDict[str, tuple] = OrderedDict()   # call id -> _Pending fields as a plain tuple
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
        # Bytes (upper bounds, toollat/budget.py) of the stores kept here, and the most entries each
        # OrderedDict ever held (its table does not shrink, so its slots are charged at that mark).
        self._bound = {k: self.memory.bound(k) for k in ("sessions", "pending", "projects")}
        self._bytes = dict.fromkeys(self._bound, 0)
        self._hw = dict.fromkeys(self._bound, 0)
        self.pipeline.static_cache_max_bytes = self.memory.bound("feature_cache")
        # the embedding share holds what call texts' embeddings gave: the pipeline's per-text
        # features, and an embedder's own vectors where it keeps them (MiniLM), half each then
        embedder = self.pipeline.embedder
        own = hasattr(embedder, "bound_memory")
        self.pipeline.text_cache.max_bytes = self.memory.bound("embedding_cache") / (2 if own else 1)
        if self.memory.budget_mb is not None and own:
            embedder.bound_memory(self.memory.bound("embedding_cache") / 2)  # a shared embedder takes the last bound

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
            "hints": self.hint_rule(),
            "held_out_metrics": held.get("toollat"),
            "running_calibration": calibration,
            "online_shifts": self._aci.to_dict() if self._aci is not None else None,
            "state": {"sessions": sessions, "max_sessions": self.max_sessions, "pending": pending,
                      "projects": len(self._projects), "max_projects": self.online.max_projects, **self.counts},
            "memory": self.memory_usage(),
        }
        return orjson.loads(dumps_bytes(info))  # strict JSON values (NaN -> None)

    def hint_rule(self) -> dict[str, Any]:
        """The hint's costs and the rule that turns a predicted distribution into a hint, in words
        (``GET /v1/model`` "hints"; ``toollat/hints.py``)."""
        c = self.costs
        host_s = c.breakeven_s / c.offload_hold_ratio if c.offload_hold_ratio > 0 else None
        return {
            "breakeven_s": c.breakeven_s, "offload_cost_s": c.offload_cost_s, "offload_hold_ratio": c.offload_hold_ratio,
            "host_ttl_s": host_s, "min_ttl_ms": c.min_ttl_ms, "unit": "gpu_hold_s",
            "rule": (
                "Costs are in GPU-hold seconds (holding this request's KV in GPU memory for one second). For a gap G: "
                f"keep T then offload costs min(G, T), plus {c.offload_cost_s:g} (offload and back) and "
                f"{c.offload_hold_ratio:g} per second in host memory if G > T, plus {c.breakeven_s:g} (a re-prefill) if G "
                f"outlasts host memory (T + {host_s if host_s is not None else float('inf'):g} s); keep T then drop costs "
                f"min(G, T) plus {c.breakeven_s:g} if G > T; offload now is keep 0 then offload; drop now costs "
                f"{c.breakeven_s:g}. Each plan's cost is averaged over the predicted quantiles (the mass between two "
                "levels at the upper value, the tail above the top level at twice it), T ranges over 0 and the "
                "quantiles, and the cheapest plan is the hint. So the TTL is where holding longer stops paying: with a "
                "wide distribution it can be far below the p50, because past the fast outcomes each further second "
                "held is paid by every slower outcome, while demoting then costs only the offload. Ask predict with "
                "\"explain\": true for each prediction's costs of keep, offload and drop."),
        }

    def memory_usage(self) -> dict[str, Any]:
        """What each client-grown store holds now against its bound: ``{"budget_bytes", "bytes",
        "session_bound_bytes", "stores": {name: {"bytes", "entries", "bound_bytes"}}}``; bytes are
        upper bounds (toollat/budget.py), a bound is null without a budget."""
        with self._lock:
            stores = {k: (self._store_bytes(k), len(getattr(self, "_" + k))) for k in self._bound}
            stores["feature_cache"] = self.pipeline.static_cache_usage()
        usage = getattr(self.pipeline.embedder, "memory_usage", None)
        vectors = usage() if usage is not None else (0, 0)
        with self._lock:
            texts = (self.pipeline.text_cache.nbytes, len(self.pipeline.text_cache))
        stores["embedding_cache"] = (vectors[0] + texts[0], vectors[1] + texts[1])

        def bound(k: str) -> int | None:
            b = self.memory.bound(k)
            return None if b == float("inf") else int(b)

        return {"budget_bytes": self.memory.budget_bytes, "bytes": sum(b for b, _ in stores.values()),
                "session_bound_bytes": self.memory.session_bytes,
                "stores": {k: {"bytes": int(b), "entries": int(n), "bound_bytes": bound(k)} for k, (b, n) in stores.items()}}

    # -- the bounded stores ---------------------------------------------------------------------
    def _store_bytes(self, store: str) -> int:
        return self._bytes[store] + self._hw[store] * ODICT_SLOT

    def _entered(self, store: str, n: int) -> None:
        if n > self._hw[store]:
            self._hw[store] = n

    def _session(self, sid: str | None) -> SessionHistory | None:
        if sid is None:
            return None
        h = self._sessions.get(sid)
        if h is None:
            h = self._sessions[sid] = SessionHistory(self.memory.session_bytes)
            self._bytes["sessions"] += str_bytes(sid) + h.nbytes
            self._entered("sessions", len(self._sessions))
            self._evict_sessions()
        else:
            self._sessions.move_to_end(sid)
        return h

    def _session_grew(self, sid: str, h: SessionHistory, before: int) -> None:
        """Account a change of a session's history; least recently used sessions go past the share."""
        if self._sessions.get(sid) is h:  # not evicted meanwhile (then its bytes left with it)
            self._bytes["sessions"] += h.nbytes - before
            self._evict_sessions()

    def _evict_sessions(self) -> None:
        while self._sessions and (len(self._sessions) > self.max_sessions
                                  or self._store_bytes("sessions") > self._bound["sessions"]):
            sid, h = self._sessions.popitem(last=False)
            self._bytes["sessions"] -= str_bytes(sid) + h.nbytes
            self.counts["evicted_sessions"] += 1

    def _add_pending(self, call_id: str, pend: _Pending) -> None:
        old = self._pending.get(call_id)
        if old is not None:  # predicted again: the entry is replaced in its place
            self._bytes["pending"] -= _pending_bytes(call_id, old)
        self._pending[call_id] = tuple(pend)
        self._bytes["pending"] += _pending_bytes(call_id, pend)
        self._entered("pending", len(self._pending))
        while self._pending and (len(self._pending) > self.max_pending
                                 or self._store_bytes("pending") > self._bound["pending"]):
            cid, p = self._pending.popitem(last=False)
            self._bytes["pending"] -= _pending_bytes(cid, p)

    def _pop_pending(self, call_id: str) -> _Pending | None:
        p = self._pending.pop(call_id, None)
        if p is None:
            return None
        self._bytes["pending"] -= _pending_bytes(call_id, p)
        return _Pending(*p)

    def _project(self, name: str) -> ProjectHistory:
        """The cross-session store of a project (least recently used dropped past ``max_projects``
        or the projects' share of the budget)."""
        p = self._projects.get(name)
        if p is None:
            # one project at most half the share: a project flooding new commands drops its own
            # oldest keys before it pushes out every other project
            p = self._projects[name] = ProjectHistory(max_bytes=self._bound["projects"] / 2)
            self._bytes["projects"] += str_bytes(name) + p.nbytes
            self._entered("projects", len(self._projects))
            self._evict_projects()
        else:
            self._projects.move_to_end(name)
        return p

    def _evict_projects(self) -> None:
        while len(self._projects) > 1 and (len(self._projects) > self.online.max_projects
                                           or self._store_bytes("projects") > self._bound["projects"]):
            name, p = self._projects.popitem(last=False)
            self._bytes["projects"] -= str_bytes(name) + p.nbytes

    # -- predicting ---------------------------------------------------------------------------
    def _fallback(self, call: Call) -> str | None:
        if self._known_tools is None or self._known_tools.encode(call.tool):
            return None
        return "family" if call.family != "other" else "global"

    def predict(self, call: dict[str, Any], explain: bool = False) -> LatencyPrediction:
        return self.predict_batch([call], explain)[0]

    def predict_batch(self, calls: list[dict[str, Any]], explain: bool = False) -> list[LatencyPrediction]:
        """Predictions in order; each call is recorded as emitted in its session (in order).
        ``explain``: each prediction also carries ``costs``, the expected cost of each plan the
        hint weighed (``hints.plan_costs``)."""
        return self.predict_calls(self.parse(calls), explain)

    def parse(self, calls: list[dict[str, Any]]) -> list[Call]:
        """Request dicts as calls, their arguments cut to what the features read (ValueError if one is bad)."""
        limit = self.pipeline.config.max_arg_chars
        return [Call.from_request(c, limit) for c in calls]

    def unseen(self, calls: list[Call]) -> int:
        """How many distinct calls among these have no cached features, so each needs the embedding
        model (0 for a bundle that reads no text): what a batch will cost before it is predicted."""
        if not self.pipeline.config.uses_text:
            return 0
        keys = {self.pipeline.static_key(self.pipeline.bounded(c)) for c in calls}
        with self._lock:
            return sum(not self.pipeline.is_cached(k) for k in keys)

    def predict_calls(self, parsed: list[Call], explain: bool = False) -> list[LatencyPrediction]:
        """``predict_batch`` for calls already parsed (``features.calls.Call``)."""
        self.pipeline.prefetch(parsed)  # never-seen texts through the encoder at once, outside the lock
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
                    before = hist.nbytes
                    hist.emit(call, k, t, exp)
                    self._session_grew(call.session_id, hist, before)
        families = [c.family for c in parsed]
        pred = self.model.predict_matrix({"tool_family": families, "tool_name": [c.tool for c in parsed]}, rows)
        q_log, p_long = pred.quantiles, pred.p_long
        if self._aci is not None:
            with self._lock:
                q_log = self._aci.apply(q_log, families)
            p_long = p_exceeds(self.levels, to_ms(q_log), LONG_MS, p_long)
        ms = to_ms(q_log)
        actions, ttls, thens = decide_plans(self.levels, ms, self.costs)
        why = plan_costs(self.levels, ms, self.costs) if explain else [None] * len(parsed)
        out = []
        with self._lock:
            for i, call in enumerate(parsed):
                if call.call_id is not None:
                    self._add_pending(call.call_id, _Pending(call.session_id, keys[i], call.family, q_log[i].copy(),
                                                             expected[i], projects[i]))
            self.counts["predicted"] += len(parsed)
        for i, call in enumerate(parsed):
            q = {n: float(v) for n, v in zip(self.level_names, ms[i])}
            out.append(LatencyPrediction(call.call_id, q.get("p50", float(ms[i][0])), q.get("p90", float(ms[i][-1])), q,
                                         float(p_long[i]), Hint(actions[i], float(ttls[i]), thens[i]),
                                         self._fallback(call), self.model_version, why[i]))
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
            pend = self._pop_pending(call_id) if call_id is not None else None
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
                before = hist.nbytes
                hist.observe(keys, float(latency_ms), is_error, at_ms=at, call_id=call_id,
                             expected=pend.expected if pend is not None else float("nan"))
                self._session_grew(sid, hist, before)
            if pend is not None and pend.project is not None:
                proj = self._project(pend.project)
                before = proj.nbytes
                proj.observe(keys, float(latency_ms), is_error)
                if self._projects.get(pend.project) is proj:
                    self._bytes["projects"] += proj.nbytes - before
                    self._evict_projects()
            self.counts["observed"] += 1
            return True

    def reset(self) -> None:
        with self._lock:
            self._sessions.clear()
            self._pending.clear()
            self._projects.clear()
            self._bytes = dict.fromkeys(self._bound, 0)
            self._hw = dict.fromkeys(self._bound, 0)
            self._calibration = _Calibration()
            if self._aci is not None:
                self._aci.reset()
            self.counts = dict.fromkeys(self.counts, 0)


__all__ = ["Predictor", "LatencyPrediction"]
