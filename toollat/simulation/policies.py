"""KV-cache policies: per gap, hold the KV in GPU memory for T seconds, offload it, or drop it.

A policy sees the gaps (``gaps.Gaps``) and returns a ``Decision``: an action per gap and a TTL
in seconds (how long GPU memory holds it for ``keep``; how long host memory holds it for
``offload``; unused for ``drop``). Policies must not look at a gap's true length except the
``Oracle``, whose point is to.

- ``StaticTTL(ttl_s)``: what serving engines do today — hold every paused request T seconds.
- ``PerToolMedianTTL``: hold for the training median latency of the tool (for a parallel
  group, the max over its tools; unknown tools fall back to their family, then all calls).
  Human gaps hold for the training median human gap (``DEFAULT_HUMAN_TTL_S`` if the training
  data has none). ``ttl_scale`` multiplies every TTL (the knob for its curve).
- ``PerToolHint``: the fair per-tool baseline — the same hint rule as ``HintPolicy``, on the
  call's tool's training distribution (a ``models.baselines.PerToolMedian`` at the prediction
  levels) instead of a per-call prediction. ``PerToolMedianTTL`` holds for the median, so it
  misses about half of the calls by construction; this one weighs the whole distribution, as
  toollat's does, so the difference between the two is what the per-call prediction adds.
- ``HintPolicy``: toollat's hint (``toollat.hints.decide_plans``) from the per-call prediction
  columns at its ``levels`` (``units.prediction_columns``: ``pred_p10_ms`` .. ``pred_p99_ms``
  for the default levels; any level set that includes 0.5 works), combined over a parallel
  group as the elementwise max of the quantiles. keep -> hold its TTL, then offload (host memory up to ``B / r``) or
  drop as the hint says; offload -> host memory for its TTL; drop -> drop. Human gaps get the
  same hint from ``human_quantiles_ms`` (the bundle's training distribution of human waits,
  ``Predictor.predict_human_gap``) when given. Otherwise human gaps, and gaps whose calls lack
  predictions, hold for ``human_ttl_s``: by default the best static TTL of the same simulation, i.e. exactly
  what the static policy it is compared with does there, so differences come from tool gaps.
  ``pred_p_long`` is not used (the hint uses the quantiles only).
- ``Oracle``: knows every gap G. Per gap it takes the cheapest of keep (cost G: hold exactly
  G), offload (``O + r * G``) and drop (``B``), in ``HintCosts`` units, preferring a hit on
  ties. No policy has a lower total cost; see ``metrics.oracle_frontier`` for the bound on
  hit rate.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from toollat.hints import HintCosts, decide_plans
from toollat.core.units import LEVELS, check_levels, prediction_columns

from .gaps import Gaps, build_gaps

KEEP, OFFLOAD, DROP = 0, 1, 2
ACTION_NAMES: tuple[str, ...] = ("keep", "offload", "drop")
DEFAULT_HUMAN_TTL_S = 300.0  # a common engine default (5 min), only when nothing better is known


@dataclass
class Decision:
    """Per gap: ``action`` (KEEP / OFFLOAD / DROP) and ``ttl_s`` (GPU hold for keep, host hold
    for offload). ``demote_s``: for keep, how long host memory holds the KV once the GPU TTL
    expires (0: dropped at the TTL, as static TTLs do). ``fallback`` counts gaps decided by a
    fallback rule (reported)."""

    action: np.ndarray
    ttl_s: np.ndarray
    fallback: int = 0
    demote_s: np.ndarray | None = None


@runtime_checkable
class Policy(Protocol):
    name: str

    def decide(self, gaps: Gaps, costs: HintCosts) -> Decision: ...


def _keep_all(ttl_s: np.ndarray) -> Decision:
    return Decision(np.full(len(ttl_s), KEEP, dtype=np.int8), np.asarray(ttl_s, dtype=np.float64))


def ttl_label(ttl_s: float) -> str:
    """1 -> '1s', 120 -> '2m', 3600 -> '1h' (whole units only, else seconds)."""
    for unit, size in (("h", 3600), ("m", 60)):
        if ttl_s >= size and ttl_s % size == 0:
            return f"{int(ttl_s // size)}{unit}"
    return f"{ttl_s:g}s"


class StaticTTL:
    def __init__(self, ttl_s: float) -> None:
        if not ttl_s >= 0:
            raise ValueError("a static TTL is >= 0 seconds")
        self.ttl_s = float(ttl_s)
        self.name = f"static_{ttl_label(self.ttl_s)}"

    def decide(self, gaps: Gaps, costs: HintCosts) -> Decision:
        return _keep_all(np.full(len(gaps.frame), self.ttl_s))


class PerToolMedianTTL:
    def __init__(self, ttl_scale: float = 1.0, min_calls: int = 5, human_ttl_s: float | None = None) -> None:
        self.ttl_scale = float(ttl_scale)
        self.min_calls = min_calls
        self.fixed_human_ttl_s = human_ttl_s  # None: learn the median human gap in fit
        self.human_ttl_s = human_ttl_s
        self.by_tool: dict[str, float] = {}
        self.by_family: dict[str, float] = {}
        self.overall_s = float("nan")
        self.name = "per_tool_median" if ttl_scale == 1.0 else f"per_tool_median_x{ttl_scale:g}"

    def fit(self, train: pd.DataFrame) -> "PerToolMedianTTL":
        """Median wall latency (s) per tool and per family (at least ``min_calls`` calls), and
        the median human gap, from a training calls table."""
        emitted = pd.to_datetime(train["emitted_at"], utc=True)
        wall = (pd.to_datetime(train["result_at"], utc=True) - emitted).dt.total_seconds().clip(lower=0.0)
        ok = wall.notna()
        self.overall_s = float(wall[ok].median()) if ok.any() else DEFAULT_HUMAN_TTL_S
        for col, store in (("tool_name", self.by_tool), ("tool_family", self.by_family)):
            if col not in train.columns:
                continue
            stats = wall[ok].groupby(train.loc[ok, col]).agg(["median", "size"])
            store.clear()
            store.update({str(k): float(m) for k, (m, n) in stats.iterrows() if n >= self.min_calls})
        if self.fixed_human_ttl_s is None:
            human = build_gaps(train).frame
            human = human.loc[human["kind"] == "human", "gap_s"]
            self.human_ttl_s = float(human.median()) if len(human) else DEFAULT_HUMAN_TTL_S
        return self

    @classmethod
    def from_medians(cls, by_tool: dict[str, float], overall_s: float, human_ttl_s: float,
                     by_family: dict[str, float] | None = None) -> "PerToolMedianTTL":
        """A policy from medians known elsewhere (seconds), e.g. a model bundle's baseline."""
        p = cls(human_ttl_s=human_ttl_s)
        p.by_tool, p.by_family, p.overall_s = dict(by_tool), dict(by_family or {}), float(overall_s)
        return p

    def scaled(self, ttl_scale: float) -> "PerToolMedianTTL":
        """The same fitted TTLs times ``ttl_scale``."""
        p = PerToolMedianTTL(ttl_scale, self.min_calls, self.fixed_human_ttl_s)
        p.by_tool, p.by_family, p.overall_s = self.by_tool, self.by_family, self.overall_s
        p.human_ttl_s = self.human_ttl_s
        return p

    def decide(self, gaps: Gaps, costs: HintCosts) -> Decision:
        if np.isnan(self.overall_s):
            raise ValueError("PerToolMedianTTL must be fitted first (fit(train_df))")
        m = gaps.members
        tool_ttl = _lookup(m["tool_name"], self.by_tool)
        tool_ttl = np.where(np.isnan(tool_ttl), _lookup(m["tool_family"], self.by_family), tool_ttl)
        tool_ttl = np.where(np.isnan(tool_ttl), self.overall_s, tool_ttl)
        ttl = np.full(len(gaps.frame), -np.inf)
        np.maximum.at(ttl, m["gap"].to_numpy(dtype=np.int64), tool_ttl)  # the group's longest TTL
        ttl = np.where(gaps.is_tool, ttl, float(self.human_ttl_s))
        return _keep_all(ttl * self.ttl_scale)


def _lookup(names: pd.Series, table: dict[str, float]) -> np.ndarray:
    """``table[name]`` per row (NaN where absent), looked up once per category."""
    cat = pd.Categorical(names)
    per_cat = np.array([table.get(str(c), np.nan) for c in cat.categories] + [np.nan], dtype=np.float64)
    return per_cat[cat.codes]  # code -1 (missing) picks the trailing NaN


class HintPolicy:
    def __init__(self, costs: HintCosts | None = None, human_ttl_s: float | None = None, name: str = "toollat",
                 human_quantiles_ms: list[float] | None = None, levels: Sequence[float] = LEVELS) -> None:
        """``costs``: the costs the hint is decided with (default: the simulation's); sweeping
        its ``breakeven_s`` gives the policy's hit-rate/storage curve. ``human_ttl_s``: the
        static TTL for human gaps and gaps without predictions (``simulate`` sets the best
        static TTL when None). ``levels``: the quantile levels of the prediction columns (and
        of ``human_quantiles_ms``), e.g. the model's ``levels_``."""
        self.levels = check_levels(levels)
        self.columns = prediction_columns(self.levels)
        if human_quantiles_ms is not None and len(human_quantiles_ms) != len(self.levels):
            raise ValueError(f"human_quantiles_ms has {len(human_quantiles_ms)} values for levels {list(self.levels)}")
        self.costs = costs
        self.human_ttl_s = human_ttl_s
        self.name = name
        self.human_quantiles_ms = None if human_quantiles_ms is None else list(human_quantiles_ms)

    def quantiles_ms(self, gaps: Gaps) -> np.ndarray:
        """Per gap, the predicted quantiles (ms) at ``levels``; NaN where none."""
        require_predictions(gaps.frame.columns, self.levels)
        return gaps.frame[self.columns].to_numpy(dtype=np.float64)

    def decide(self, gaps: Gaps, costs: HintCosts) -> Decision:
        if self.human_ttl_s is None:
            raise ValueError(f"{type(self).__name__} needs human_ttl_s (simulate() sets it to the best static TTL)")
        n = len(gaps.frame)
        q = self.quantiles_ms(gaps)
        predicted = gaps.is_tool & np.isfinite(q).all(axis=1)
        action = np.full(n, KEEP, dtype=np.int8)
        ttl = np.full(n, float(self.human_ttl_s))
        demote = np.zeros(n)
        if predicted.any():
            # Quantile heads can cross; the hint assumes ascending values.
            values = np.sort(q[predicted], axis=1)
            c = self.costs or costs
            names, ttl_ms, then = decide_plans(self.levels, values, c)
            names = np.asarray(names)
            action[predicted] = np.where(names == "keep", KEEP, np.where(names == "offload", OFFLOAD, DROP))
            ttl[predicted] = ttl_ms / 1000.0
            host = c.breakeven_s / c.offload_hold_ratio if c.offload_hold_ratio > 0 else np.inf
            demote[predicted] = np.where(np.asarray(then, dtype=object) == "offload", host, 0.0)
        human = ~gaps.is_tool
        if self.human_quantiles_ms is not None and human.any():
            c = self.costs or costs
            names, ttl_ms, then = decide_plans(self.levels, np.sort(np.asarray([self.human_quantiles_ms], dtype=np.float64), axis=1), c)
            host = c.breakeven_s / c.offload_hold_ratio if c.offload_hold_ratio > 0 else np.inf
            action[human] = {"keep": KEEP, "offload": OFFLOAD, "drop": DROP}[names[0]]
            ttl[human] = ttl_ms[0] / 1000.0
            demote[human] = host if then[0] == "offload" else 0.0
        fallback = int((gaps.is_tool & ~predicted).sum())
        return Decision(action, ttl, fallback, demote)


class PerToolHint(HintPolicy):
    def __init__(self, baseline, costs: HintCosts | None = None, human_ttl_s: float | None = None,
                 human_quantiles_ms: list[float] | None = None, name: str = "per_tool",
                 levels: Sequence[float] | None = None) -> None:
        """``baseline``: a fitted ``PerToolMedian`` (log10 s at its levels, which must include
        ``levels``; None: the baseline's own), e.g. a bundle's own or ``PerToolHint.fit``'s."""
        levels = tuple(baseline.levels) if levels is None else tuple(levels)
        super().__init__(costs, human_ttl_s, name, human_quantiles_ms, levels)
        missing = [lv for lv in self.levels if lv not in baseline.levels]
        if missing:
            raise ValueError(f"per-tool baseline lacks levels {missing}")
        self.baseline = baseline

    @classmethod
    def fit(cls, train: pd.DataFrame, levels: Sequence[float] = LEVELS, **kw) -> "PerToolHint":
        """From a training calls table's wall latency, as ``PerToolMedianTTL.fit`` reads it, at ``levels``."""
        levels = check_levels(levels)
        from toollat.models.baselines import PerToolMedian
        from toollat.core.units import to_log10_s

        emitted = pd.to_datetime(train["emitted_at"], utc=True)
        wall_ms = (pd.to_datetime(train["result_at"], utc=True) - emitted).dt.total_seconds().clip(lower=0.0) * 1000.0
        y = to_log10_s(wall_ms.to_numpy(dtype=np.float64))
        ok = ~np.isnan(y)
        if not ok.any():  # nothing to learn from: every tool gets the engine default, as the median TTL does
            base = PerToolMedian(levels=levels)
            base.overall = [float(np.log10(DEFAULT_HUMAN_TTL_S))] * len(levels) + [1.0]
            return cls(base, levels=levels, **kw)
        return cls(PerToolMedian(levels=levels).fit(train[ok].reset_index(drop=True), None, y[ok], []), levels=levels, **kw)

    def quantiles_ms(self, gaps: Gaps) -> np.ndarray:
        m = gaps.members
        cols = [list(self.baseline.levels).index(lv) for lv in self.levels]
        per_tool = {str(t): np.asarray(self.baseline.row(str(t)), dtype=np.float64)[cols] for t in m["tool_name"].cat.categories}
        rows = np.array([per_tool[str(t)] for t in m["tool_name"]], dtype=np.float64).reshape(len(m), len(cols))
        q = np.full((len(gaps.frame), len(cols)), -np.inf)
        np.maximum.at(q, m["gap"].to_numpy(dtype=np.int64), 1000.0 * 10.0 ** rows)  # a group: its longest tool
        q[~np.isfinite(q).all(axis=1)] = np.nan
        return q


class Oracle:
    def __init__(self, costs: HintCosts | None = None, name: str = "oracle") -> None:
        self.costs = costs
        self.name = name

    def decide(self, gaps: Gaps, costs: HintCosts) -> Decision:
        c = self.costs or costs
        g = gaps.gap_s
        off = c.offload_cost_s + c.offload_hold_ratio * g
        keep = (g <= off) & (g <= c.breakeven_s)
        offload = ~keep & (off <= c.breakeven_s)
        action = np.where(keep, KEEP, np.where(offload, OFFLOAD, DROP)).astype(np.int8)
        return Decision(action, np.where(action == DROP, 0.0, g))


def has_predictions(columns, levels: Sequence[float] = LEVELS) -> bool:
    """Whether a table has the prediction columns of ``levels``."""
    return set(prediction_columns(levels)) <= set(columns)


def require_predictions(columns, levels: Sequence[float] = LEVELS) -> None:
    """Raise a clear ``ValueError`` if the prediction columns of ``levels`` are missing."""
    wanted = prediction_columns(levels)
    missing = [c for c in wanted if c not in set(columns)]
    if missing:
        raise ValueError(
            f"the toollat policy needs per-call prediction columns {wanted} on the "
            f"calls DataFrame (missing {missing}); add them with toollat's Predictor first")
