"""Replay a calls table's gaps under each policy; the headline comparison; the result object.

``simulate(calls_df, policies, costs, train_df)`` runs:

- the static TTL sweep (``STATIC_TTLS_S``, 1 s .. 1 h), always: it is the reference every
  headline number is relative to. The best static TTL is the one with the lowest
  ``cost_ratio`` (GPU-hold cost plus re-prefill cost under the same ``HintCosts``): the
  timeout a serving engine that knows its costs would pick.
- ``per_tool_median``: fitted on ``train_df`` (or, if None, in-sample on ``calls_df``; the
  result says so), swept over ``SWEEP_SCALES`` times its TTLs for its curve. Labelled as what
  it is: a TTL at the median misses about half of the calls by construction.
- ``per_tool``: the fair per-tool baseline (``PerToolHint``): the tool's training distribution
  through the same hint rule as toollat's predictions, fitted like ``per_tool_median`` and
  swept like ``toollat``.
- ``toollat``: the hint policy on the calls' prediction columns; human gaps and gaps without
  predictions hold for the best static TTL. Swept over ``SWEEP_SCALES`` times ``breakeven_s``
  (the decision's costs; the evaluation's costs stay fixed) for its curve.
- ``oracle``: at the given costs, and its frontier (``metrics.oracle_frontier``).

Headline ("equal storage" is on the equivalent storage ratio Rc, which is R for static TTLs):

- ``gap_closed_at_equal_storage`` = (toollat's hit rate at the best static's storage − the
  static's hit rate) / (the oracle's hit rate at that storage − the static's hit rate).
- ``storage_ratio_at_equal_hit_rate`` = toollat's storage at the static's hit rate / the
  static's storage (below 1: toollat reaches the same hit rate with less KV held).
- A policy's value "at" a storage or hit rate is read off its curve: its swept operating
  points plus (0, 0) (drop everything), joined by their upper concave envelope, linearly in
  Rc (``metrics.Curve``). Linear is the honest choice: a mix of two operating points (each
  request run under one of them at random) lies on the segment between them, so the
  interpolated value is achievable; for the oracle it is the exact fractional-knapsack bound.
  Beyond a curve's last point the hit rate stays at its last value; a hit rate a curve never
  reaches gives None.
- ``hit_rate_toollat_at_static_gpu_storage`` and ``gpu_storage_ratio_at_equal_hit_rate``: the
  same two readings on GPU memory alone (R, TraceLab's axis), where offloading is free, so no
  oracle bounds them; they show what toollat saves in GPU memory, at the offload traffic and
  host memory the other fields report.
- The per-tool median gets the same readings (``*_per_tool_median``), on its TTL-scale sweep,
  and the fair per-tool policy (``*_per_tool``) on its ``breakeven_s`` sweep.
- ``decision_gap_closed``: ``hints.decision_gap_closed`` (the number ``toollat
  evaluate`` reports per call) of the tool gaps' ``cost_ratio`` of toollat, the fair per-tool
  policy and the oracle (human gaps left out: both policies decide them alike).
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from toollat.core.units import LEVELS
from toollat.hints import HintCosts, decision_gap_closed

from .gaps import MAX_ACTIVE_S, build_gaps
from .metrics import Curve, evaluate, oracle_frontier
from .policies import (HintPolicy, Oracle, PerToolHint, PerToolMedianTTL, Policy, StaticTTL, has_predictions,
                       require_predictions)

STATIC_TTLS_S: tuple[float, ...] = (1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1200, 1800, 3600)
SWEEP_SCALES: tuple[float, ...] = tuple(2.0 ** k for k in range(-6, 7))
POLICY_NAMES: tuple[str, ...] = ("static", "per_tool_median", "per_tool", "toollat", "oracle")
TABLE_COLUMNS: tuple[str, ...] = (
    "hit_rate", "storage_ratio", "host_storage_ratio", "equiv_storage_ratio", "cost_ratio",
    "prefill_amplification", "reprefill_tokens", "offload_tokens", "keep_share", "offload_share",
    "drop_share",
)


@dataclass
class SimulationResult:
    costs: HintCosts
    data: dict[str, Any]
    policies: dict[str, dict[str, Any]]           # name -> metrics (``metrics.evaluate``)
    curves: dict[str, list[dict[str, float]]]     # swept operating points; the oracle frontier
    headline: dict[str, Any]
    best_static: str | None = None                # its policy name, e.g. "static_5m"
    best_static_ttl_s: float | None = None
    frontiers: dict[str, Curve] = field(default_factory=dict, repr=False)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: NaN and infinities become None."""
        return _json_ready({
            "headline": self.headline,
            "costs": {k: getattr(self.costs, k) for k in ("breakeven_s", "offload_cost_s",
                                                          "offload_hold_ratio", "min_ttl_ms")},
            "data": self.data,
            "policies": self.policies,
            "curves": self.curves,
        })

    def table(self) -> pd.DataFrame:
        """One row per policy (the static sweep included), for printing."""
        rows = []
        for name, m in self.policies.items():
            row = {"policy": name + (" *" if name == self.best_static else "")}
            row.update({k: m[k] for k in TABLE_COLUMNS})
            row["hit_rate_tool"] = m["by_kind"]["tool"]["hit_rate"]
            row["hit_rate_human"] = m["by_kind"]["human"]["hit_rate"]
            rows.append(row)
        return pd.DataFrame(rows).set_index("policy")


def simulate(
    calls_df: pd.DataFrame,
    policies: Sequence[str | Policy] | None = None,
    costs: HintCosts = HintCosts(),
    train_df: pd.DataFrame | None = None,
    *,
    static_ttls_s: Sequence[float] = STATIC_TTLS_S,
    sweep_scales: Sequence[float] = SWEEP_SCALES,
    max_active_s: float = MAX_ACTIVE_S,
    levels: Sequence[float] = LEVELS,
) -> SimulationResult:
    """Replay ``calls_df`` under the policies (module docstring).

    ``policies``: names from ``POLICY_NAMES`` and/or policy objects. A ``PerToolMedianTTL``,
    ``HintPolicy`` or ``Oracle`` object takes that name's place (e.g. a per-tool median fitted
    elsewhere; a ``HintPolicy`` without ``human_ttl_s`` gets the best static TTL); any other
    ``Policy`` is evaluated beside them. None means all four names, ``toollat`` only if the
    calls have the prediction columns. Asking for ``toollat`` without them raises ``ValueError``.
    ``levels``: the quantile levels of the prediction columns (a model's ``levels_``), for the
    policies named by a string; a policy object carries its own.
    """
    if policies is None:
        policies = [p for p in POLICY_NAMES if p != "toollat" or has_predictions(calls_df.columns, levels)]
    slots: dict[str, Any] = {}
    others: list[Policy] = []
    for p in policies:
        if isinstance(p, str):
            if p not in POLICY_NAMES:
                raise ValueError(f"unknown policy {p!r}; choose from {list(POLICY_NAMES)}")
            slots.setdefault(p, None)
        elif isinstance(p, (PerToolMedianTTL, HintPolicy, Oracle)):
            slots[{PerToolMedianTTL: "per_tool_median", PerToolHint: "per_tool", HintPolicy: "toollat",
                   Oracle: "oracle"}[type(p)]] = p
        else:
            others.append(p)
    if "toollat" in slots:
        require_predictions(calls_df.columns, levels if slots["toollat"] is None else slots["toollat"].levels)

    gaps = build_gaps(calls_df, max_active_s=max_active_s)
    data: dict[str, Any] = gaps.report.to_dict()
    data["active_kv_token_s"] = gaps.active_kv
    data["baseline_prefill_tokens"] = gaps.baseline_prefill
    results: dict[str, dict[str, Any]] = {}
    curves: dict[str, list[dict[str, float]]] = {}
    frontiers: dict[str, Curve] = {}

    def run(policy: Policy) -> dict[str, Any]:
        return evaluate(gaps, policy.decide(gaps, costs), costs)

    static = []
    for ttl in sorted(static_ttls_s):
        p = StaticTTL(ttl)
        results[p.name] = run(p)
        static.append({"ttl_s": float(ttl), **_point(results[p.name])})
    curves["static"] = static
    frontiers["static"] = Curve.from_points([s["equiv_storage_ratio"] for s in static],
                                            [s["hit_rate"] for s in static], hull=False)
    best = _best_static(static)
    best_ttl = None if best is None else static[best]["ttl_s"]
    best_name = None if best_ttl is None else StaticTTL(best_ttl).name

    if "per_tool_median" in slots:
        ptm = slots["per_tool_median"]
        if ptm is None:
            ptm = PerToolMedianTTL().fit(train_df if train_df is not None else calls_df)
            data["per_tool_median_fit"] = "train_df" if train_df is not None else "in-sample (no train_df)"
        else:
            data["per_tool_median_fit"] = "given"
        results["per_tool_median"] = run(ptm)
        curves["per_tool_median"] = [{"ttl_scale": k, **_point(run(ptm.scaled(k)))} for k in sweep_scales]
        frontiers["per_tool_median"] = _curve(curves["per_tool_median"])

    for name in ("per_tool", "toollat"):  # the same hint rule: on the tool's distribution, on the call's prediction
        if name not in slots:
            continue
        given = slots[name]
        if given is None:
            if name == "toollat":
                given = HintPolicy(levels=levels)
            else:
                given = PerToolHint.fit(train_df if train_df is not None else calls_df, levels)
                data["per_tool_fit"] = "train_df" if train_df is not None else "in-sample (no train_df)"
        human_ttl = given.human_ttl_s
        if human_ttl is None:
            human_ttl = best_ttl if best_ttl is not None else float(min(static_ttls_s))
        hint_costs = given.costs or costs
        hq = given.human_quantiles_ms

        def variant(c: HintCosts) -> HintPolicy:
            if isinstance(given, PerToolHint):
                return PerToolHint(given.baseline, c, human_ttl, human_quantiles_ms=hq, levels=given.levels)
            return HintPolicy(c, human_ttl, human_quantiles_ms=hq, levels=given.levels)

        results[name] = run(variant(hint_costs))
        data[f"{name}_human_ttl_s"] = human_ttl
        data[f"{name}_human_gaps"] = ("hint from the training distribution of human waits" if hq is not None
                                      else f"static TTL {human_ttl:g} s (no human-gap distribution given)")
        data[f"{name}_gaps_without_prediction"] = results[name]["fallback_gaps"]
        sweep = [{"breakeven_s": hint_costs.breakeven_s * k,
                  **_point(run(variant(replace(hint_costs, breakeven_s=hint_costs.breakeven_s * k))))} for k in sweep_scales]
        curves[name] = sweep
        frontiers[name] = _curve(sweep)
        if name == "toollat":
            frontiers["toollat_gpu"] = Curve.from_points([p["storage_ratio"] for p in sweep],
                                                         [p["hit_rate"] for p in sweep])

    if "oracle" in slots:
        results["oracle"] = run(slots["oracle"] or Oracle())
        frontiers["oracle"] = oracle_frontier(gaps, costs)
        curves["oracle"] = frontiers["oracle"].points()

    for p in others:
        results[p.name] = run(p)

    res = SimulationResult(costs, data, results, curves, {}, best_name, best_ttl, frontiers)
    res.headline = headline(res)
    return res


def _point(m: dict[str, Any]) -> dict[str, float]:
    return {k: m[k] for k in ("hit_rate", "storage_ratio", "equiv_storage_ratio", "cost_ratio")}


def _curve(points: list[dict[str, float]]) -> Curve:
    return Curve.from_points([p["equiv_storage_ratio"] for p in points], [p["hit_rate"] for p in points])


def _best_static(static: list[dict[str, float]]) -> int | None:
    cost = np.array([s["cost_ratio"] for s in static], dtype=np.float64)
    if not np.isfinite(cost).any():
        return None
    return int(np.nanargmin(cost))  # ties: the shorter TTL (sorted ascending)


def headline(result: SimulationResult) -> dict[str, Any]:
    """The headline comparison (module docstring), JSON-ready; None where a part is missing."""
    pol, fr = result.policies, result.frontiers
    s = pol.get(result.best_static) if result.best_static else None
    h: dict[str, Any] = {
        "best_static_ttl_s": result.best_static_ttl_s,
        "best_static_criterion": ("lowest cost_ratio: (GPU hold + offload) + breakeven_s x re-prefilled "
                                  "tokens, per active KV-second"),
        "equal_storage_axis": "equiv_storage_ratio (= storage_ratio R for static TTLs)",
    }
    for label, name in (("static", result.best_static), ("per_tool_median", "per_tool_median"),
                        ("per_tool", "per_tool"), ("toollat", "toollat"), ("oracle", "oracle")):
        m = pol.get(name) if name else None
        for key in ("hit_rate", "storage_ratio", "equiv_storage_ratio", "cost_ratio", "prefill_amplification"):
            h[f"{key}_{label}"] = None if m is None else m[key]
    r_s = None if s is None else s["equiv_storage_ratio"]
    hit_s = None if s is None else s["hit_rate"]
    oracle_at = _at_storage(fr.get("oracle"), r_s)
    h["hit_rate_oracle_at_static_storage"] = oracle_at
    h["storage_ratio_oracle_at_static_hit_rate"] = _ratio_at_hit(fr.get("oracle"), hit_s, r_s)
    for label in ("toollat", "per_tool_median", "per_tool"):
        suffix = "" if label == "toollat" else f"_{label}"
        at = _at_storage(fr.get(label), r_s)
        h[f"hit_rate_{label}_at_static_storage"] = at
        h["gap_closed_at_equal_storage" + suffix] = (
            None if at is None or oracle_at is None or not oracle_at - hit_s > 1e-12
            else (at - hit_s) / (oracle_at - hit_s))
        h["storage_ratio_at_equal_hit_rate" + suffix] = _ratio_at_hit(fr.get(label), hit_s, r_s)
    tool_cost = {k: pol[k]["by_kind"]["tool"]["cost_ratio"] if k in pol else None for k in ("toollat", "per_tool", "oracle")}
    h["decision_gap_closed"] = None if None in tool_cost.values() else decision_gap_closed(
        tool_cost["toollat"], tool_cost["per_tool"], tool_cost["oracle"])
    # GPU memory alone (offloads free; no oracle bound on this axis): for the static TTL R = Rc.
    h["hit_rate_toollat_at_static_gpu_storage"] = _at_storage(fr.get("toollat_gpu"), r_s)
    h["gpu_storage_ratio_at_equal_hit_rate"] = _ratio_at_hit(fr.get("toollat_gpu"), hit_s, r_s)
    return h


def _at_storage(curve: Curve | None, storage: float | None) -> float | None:
    if curve is None or storage is None or not math.isfinite(storage):
        return None
    v = curve.hit_rate_at(storage)
    return v if math.isfinite(v) else None


def _ratio_at_hit(curve: Curve | None, hit_rate: float | None, storage: float | None) -> float | None:
    if curve is None or hit_rate is None or storage is None or not storage > 0:
        return None
    v = curve.storage_at(hit_rate)
    return v / storage if math.isfinite(v) else None


def _json_ready(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        return float(x) if math.isfinite(x) else None
    return x
