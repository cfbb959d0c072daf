"""Gaps: when each session's request sits paused, and how much KV it holds meanwhile.

From a canonical calls table (``toollat.ingest.table``) to one row per gap, in time order per
*stream*. A stream is one chain of requests sharing a growing context: the session's main
agent, or one subagent (sidechain calls with an ``agent_id``), whose requests have their own
context and pause on their own tools.

Two kinds of gap:

- ``tool``: one per parallel group (``session_id``, ``parallel_group``). The request pauses
  once the model's message is complete, at the group's last emission (``emitted_at`` max), and
  resumes when the last result is back (``result_at`` max). ``tool_name`` is the group's
  longest call. A group with any missing ``result_at`` is skipped (its end is unknown) and
  counted.
- ``human``: before a user turn, from ``prev_turn_ended_at`` to ``turn_started_at`` of the
  turn's first call, where both are known (main agent only; turns without tool calls leave
  no rows, so their gaps are invisible).

``tokens`` is the KV the paused request holds: ``context_tokens`` of the group (max over its
calls), or of the turn's first call for a human gap. Output tokens are not added: they are
small next to the context and unreliable in Claude Code logs (streamed records report 1-2).
Missing counts fall back to the stream's median, then the session's, then the table's, then
``DEFAULT_CONTEXT_TOKENS``; sessions with no counts at all are counted in the report.

``active_s`` is the time the request is active after the gap (decoding, then the next
emission): the next gap's start in the stream minus this gap's end, clipped at 0 (gaps can
overlap, e.g. a background tool); 0 after the stream's last gap (the final answer's end is
not in the table). The stream's first gap also gets ``lead_s``: from the first turn's start
to that gap. The storage ratio weights both by ``tokens``. An active period is capped at
``max_active_s`` (default 10 min; counted): longer "active" stretches in the logs are idle
time the table cannot see as a gap (a turn without tool calls, so its human wait is hidden;
a session left open overnight), and counting them as decoding would shrink every storage
ratio. In the shared corpus the cap binds on 0.3% of gaps (4 in 5 before a human turn) but
removes about half of the raw active KV-time; the report gives the share it removed.

``baseline_prefill`` is what an eviction-free cache prefills per stream: the first gap's
tokens plus every later growth of the context (the fresh tokens; TraceLab's ``fresh``).
Negative gaps (clock skew) are clipped to 0 and counted; zero gaps are kept and counted.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from toollat.core.units import P_LONG_COLUMN

# Where a table has no token counts at all: a typical coding-agent context (the shared corpus
# median is ~94k; Claude Code sessions start near 15k).
DEFAULT_CONTEXT_TOKENS = 50_000
MAX_ACTIVE_S = 600.0  # longest credible active period after a gap (module docstring)
REQUIRED_COLUMNS: tuple[str, ...] = ("session_id", "emitted_at", "result_at", "tool_name")


def prediction_columns_in(columns) -> list[str]:
    """The prediction columns a calls table carries, whatever its levels: every ``pred_*_ms``
    quantile column (``units.prediction_columns``) and ``pred_p_long``, in table order."""
    return [c for c in columns if c == P_LONG_COLUMN or (str(c).startswith("pred_") and str(c).endswith("_ms"))]

_SEP = "\x1f"  # joins key parts; never in ids


@dataclass
class GapReport:
    """What went into the gaps and what was skipped or patched, and why."""

    calls: int = 0
    sessions: int = 0
    streams: int = 0
    tool_gaps: int = 0
    human_gaps: int = 0
    calls_without_emission: int = 0      # emitted_at missing: the call cannot be placed
    skipped_gaps_missing_result: int = 0  # a group with a result_at missing: end unknown
    skipped_calls_missing_result: int = 0
    negative_gaps_clipped: int = 0        # end before start (clock skew): gap set to 0
    zero_gaps: int = 0                    # after clipping
    overlapping_gaps: int = 0             # the next gap started before this one ended
    active_periods_capped: int = 0        # active time after a gap longer than max_active_s
    active_kv_share_capped: float = 0.0   # share of the raw active KV token-seconds the cap removed
    single_call_sessions: int = 0
    sessions_without_tokens: int = 0
    gaps_with_imputed_tokens: int = 0
    token_fallback_constant: float = 0.0  # the value used where a whole session had none
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Gaps:
    """One row per kept gap (``frame``), the calls behind the tool gaps (``members``) and totals.

    ``frame`` columns: ``stream``, ``session_id``, ``kind`` (tool|human), ``start``, ``end``,
    ``gap_s``, ``tokens``, ``tokens_imputed``, ``active_s``, ``lead_s``, ``tool_name``,
    ``n_calls``, and the ``pred_*`` columns (elementwise max over the group) when the calls
    have them. ``members``: ``gap`` (row in ``frame``), ``tool_name``, ``tool_family``.
    """

    frame: pd.DataFrame
    members: pd.DataFrame
    report: GapReport
    active_kv: float         # sum of tokens * (active_s + lead_s): active KV token-seconds
    baseline_prefill: float  # tokens an eviction-free cache prefills

    # numpy views for the policies and metrics, which run many times over the same gaps
    @cached_property
    def gap_s(self) -> np.ndarray:
        return self.frame["gap_s"].to_numpy(dtype=np.float64)

    @cached_property
    def tokens(self) -> np.ndarray:
        return self.frame["tokens"].to_numpy(dtype=np.float64)

    @cached_property
    def is_tool(self) -> np.ndarray:
        return (self.frame["kind"] == "tool").to_numpy(dtype=bool)


def _seconds(delta: pd.Series) -> np.ndarray:
    return delta.dt.total_seconds().to_numpy(dtype=np.float64, na_value=np.nan)


def _utc(s: pd.Series) -> pd.Series:
    s = pd.to_datetime(s, utc=True)
    return s.astype("datetime64[ms, UTC]")


def build_gaps(calls: pd.DataFrame, max_active_s: float = MAX_ACTIVE_S) -> Gaps:
    """The gaps of a canonical calls table (module docstring). Never raises on bad rows."""
    missing = [c for c in REQUIRED_COLUMNS if c not in calls.columns]
    if missing:
        raise ValueError(f"calls table lacks columns {missing} (see toollat.ingest.table)")
    rep = GapReport(calls=len(calls))
    df = _prepare(calls, rep)
    rep.sessions = int(calls["session_id"].nunique())
    rep.single_call_sessions = int((calls["session_id"].value_counts() == 1).sum())

    tool, members = _tool_events(df)
    human = _human_events(df)
    ev = pd.concat([tool, human], ignore_index=True, sort=False)
    if ev.empty:
        return _empty(rep, prediction_columns_in(df.columns))
    # Human gaps sort before a tool gap that starts at the same instant (they end earlier).
    ev["_order"] = (ev["kind"] == "tool").astype(np.int8)
    ev = ev.sort_values(["stream", "start", "_order", "end"], kind="stable").reset_index(drop=True)

    # Active time runs from a gap's end to the next gap's start, skipped gaps included (their
    # start is known); what follows a skipped gap is unknown and counts as 0.
    same_next = ev["stream"].eq(ev["stream"].shift(-1)).fillna(False).to_numpy(dtype=bool)
    next_start = ev["start"].shift(-1)
    active = _seconds(next_start - ev["end"])
    active = np.where(same_next, active, np.nan)
    rep.overlapping_gaps = int((active < 0).sum())
    rep.active_periods_capped = int((active > max_active_s).sum())
    ev["raw_active_s"] = np.nan_to_num(np.maximum(active, 0.0), nan=0.0)
    ev["active_s"] = np.minimum(ev["raw_active_s"], max_active_s)

    first = ~ev["stream"].eq(ev["stream"].shift(1)).fillna(False).to_numpy(dtype=bool)
    lead = _seconds(ev["start"] - ev["lead_from"])
    ev["raw_lead_s"] = np.where(first & (ev["kind"] == "tool").to_numpy(),
                                np.nan_to_num(np.maximum(lead, 0.0), nan=0.0), 0.0)
    ev["lead_s"] = np.minimum(ev["raw_lead_s"], max_active_s)

    skipped = ev["missing_result"].to_numpy(dtype=bool)
    rep.skipped_gaps_missing_result = int(skipped.sum())
    rep.skipped_calls_missing_result = int(ev.loc[skipped, "n_calls"].sum())
    kept_ids = ev.loc[~skipped, "event"].to_numpy()
    ev = ev.loc[~skipped].reset_index(drop=True)

    gap = _seconds(ev["end"] - ev["start"])
    rep.negative_gaps_clipped = int((gap < 0).sum())
    ev["gap_s"] = np.maximum(gap, 0.0)
    rep.zero_gaps = int((ev["gap_s"] == 0).sum())
    rep.tool_gaps = int((ev["kind"] == "tool").sum())
    rep.human_gaps = int((ev["kind"] == "human").sum())
    rep.streams = int(ev["stream"].nunique())

    _impute_tokens(ev, rep)
    tokens = ev["tokens"].to_numpy(dtype=np.float64)
    active_kv = float((tokens * (ev["active_s"].to_numpy() + ev["lead_s"].to_numpy())).sum())
    raw_kv = float((tokens * (ev["raw_active_s"].to_numpy() + ev["raw_lead_s"].to_numpy())).sum())
    rep.active_kv_share_capped = 1.0 - active_kv / raw_kv if raw_kv > 0 else 0.0
    growth = np.maximum(ev.groupby("stream", sort=False)["tokens"].diff().fillna(ev["tokens"]), 0.0)
    baseline = float(growth.sum())

    # Members of kept tool gaps, pointing at their row in the frame.
    row_of = pd.Series(np.arange(len(ev)), index=kept_ids)
    members = members[members["event"].isin(row_of.index)]
    members = pd.DataFrame({  # categorical: policies map names once per category, not per call
        "gap": row_of.loc[members["event"].to_numpy()].to_numpy(),
        "tool_name": pd.Categorical(members["tool_name"].astype(object)),
        "tool_family": pd.Categorical(members["tool_family"].astype(object)),
    })
    cols = ["stream", "session_id", "kind", "start", "end", "gap_s", "tokens", "tokens_imputed",
            "active_s", "lead_s", "tool_name", "n_calls"]
    cols += prediction_columns_in(ev.columns)
    return Gaps(ev[cols], members, rep, active_kv, baseline)


def _prepare(calls: pd.DataFrame, rep: GapReport) -> pd.DataFrame:
    """The columns the gaps need, with defaults for optional ones and one row per placeable call."""
    calls = calls.reset_index(drop=True)
    n = len(calls)

    def col(name: str, default: Any) -> pd.Series:
        return calls[name] if name in calls.columns else pd.Series([default] * n, dtype=object)

    df = pd.DataFrame({
        "session_id": calls["session_id"].astype("string").fillna(""),
        "emitted_at": _utc(calls["emitted_at"]),
        "result_at": _utc(calls["result_at"]),
        "tool_name": calls["tool_name"].astype("string").fillna("?"),
        "tool_family": col("tool_family", "other").astype("string").fillna("other"),
        "turn_started_at": _utc(col("turn_started_at", pd.NaT)),
        "prev_turn_ended_at": _utc(col("prev_turn_ended_at", pd.NaT)),
    })
    tokens = pd.to_numeric(col("context_tokens", np.nan), errors="coerce").astype("float64")
    df["tokens"] = tokens.where(tokens > 0)  # 0 means "not reported", not an empty KV
    # A call without a group is a message of its own.
    row_ids = "#row" + pd.Series(np.arange(n)).astype(str)
    df["group"] = col("parallel_group", None).astype("string").fillna(row_ids)
    side = col("is_sidechain", False).fillna(False).astype(bool)
    agent = col("agent_id", None).astype("string")
    sub = side & agent.notna()
    df["stream"] = df["session_id"].where(~sub, df["session_id"] + _SEP + agent.fillna(""))
    df["sidechain"] = side.to_numpy()
    df["wall_s"] = _seconds(df["result_at"] - df["emitted_at"])
    for c in prediction_columns_in(calls.columns):
        df[c] = pd.to_numeric(calls[c], errors="coerce").astype("float64")
    no_emit = df["emitted_at"].isna().to_numpy()
    rep.calls_without_emission = int(no_emit.sum())
    return df.loc[~no_emit].reset_index(drop=True)


def _tool_events(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One event per parallel group, and the calls behind each (``event`` = its group number)."""
    key = df["stream"] + _SEP + df["group"]
    codes, _ = pd.factorize(key)
    df = df.assign(event=codes)
    g = df.groupby("event", sort=True)
    ev = pd.DataFrame({
        "stream": g["stream"].first(),
        "session_id": g["session_id"].first(),
        "start": g["emitted_at"].max(),
        "end": g["result_at"].max(),
        "missing_result": g["result_at"].count() < g.size(),
        "tokens": g["tokens"].max(),
        "n_calls": g.size(),
        "lead_from": g["turn_started_at"].min(),
    })
    # The group's longest call names the gap (ties: the later emission).
    longest = df.sort_values(["event", "wall_s", "emitted_at"], na_position="first", kind="stable")
    ev["tool_name"] = longest.groupby("event", sort=True)["tool_name"].last()
    preds = prediction_columns_in(df.columns)
    if preds:
        # Elementwise max over the group; a member without a prediction leaves the gap without one.
        mx = g[preds].max()
        incomplete = g[preds].count().lt(g.size(), axis=0)
        ev[preds] = mx.mask(incomplete)
    ev["kind"] = "tool"
    ev = ev.reset_index()
    members = df[["event", "tool_name", "tool_family"]]
    return ev, members


def _human_events(df: pd.DataFrame) -> pd.DataFrame:
    """One event per user turn whose start and the previous turn's end are both known."""
    main = df[~df["sidechain"] & df["turn_started_at"].notna() & df["prev_turn_ended_at"].notna()]
    first = main.sort_values(["stream", "turn_started_at", "emitted_at"], kind="stable")
    first = first.drop_duplicates(["stream", "turn_started_at"], keep="first").reset_index(drop=True)
    n = len(first)
    return pd.DataFrame({
        "event": -1 - np.arange(n),  # negative: never a tool group
        "stream": first["stream"],
        "session_id": first["session_id"],
        "start": first["prev_turn_ended_at"],
        "end": first["turn_started_at"],
        "missing_result": np.zeros(n, dtype=bool),
        "tokens": first["tokens"],
        "n_calls": np.zeros(n, dtype=np.int64),
        "lead_from": pd.Series(pd.NaT, index=first.index, dtype="datetime64[ms, UTC]"),
        "tool_name": pd.Series("(human)", index=first.index, dtype="string"),
        "kind": "human",
    })


def _impute_tokens(ev: pd.DataFrame, rep: GapReport) -> None:
    """Fill missing token counts: stream median, session median, table median, constant."""
    tokens = ev["tokens"].astype("float64")
    missing = tokens.isna()
    ev["tokens_imputed"] = missing.to_numpy()
    rep.gaps_with_imputed_tokens = int(missing.sum())
    by_session = tokens.groupby(ev["session_id"]).transform("count")
    rep.sessions_without_tokens = int(ev.loc[by_session == 0, "session_id"].nunique())
    overall = float(tokens.median()) if tokens.notna().any() else float(DEFAULT_CONTEXT_TOKENS)
    rep.token_fallback_constant = overall
    if rep.sessions_without_tokens:
        rep.notes.append(f"{rep.sessions_without_tokens} session(s) without token counts: "
                         f"weighted as {overall:.0f} tokens per gap")
    if missing.any():
        tokens = tokens.fillna(tokens.groupby(ev["stream"]).transform("median"))
        tokens = tokens.fillna(tokens.groupby(ev["session_id"]).transform("median"))
        tokens = tokens.fillna(overall)
    ev["tokens"] = tokens.to_numpy()


def _empty(rep: GapReport, pred_columns: list[str]) -> Gaps:
    frame = pd.DataFrame({
        "stream": pd.Series(dtype="string"), "session_id": pd.Series(dtype="string"),
        "kind": pd.Series(dtype="string"), "start": pd.Series(dtype="datetime64[ms, UTC]"),
        "end": pd.Series(dtype="datetime64[ms, UTC]"), "gap_s": pd.Series(dtype="float64"),
        "tokens": pd.Series(dtype="float64"), "tokens_imputed": pd.Series(dtype=bool),
        "active_s": pd.Series(dtype="float64"), "lead_s": pd.Series(dtype="float64"),
        "tool_name": pd.Series(dtype="string"), "n_calls": pd.Series(dtype="int64"),
        **{c: pd.Series(dtype="float64") for c in pred_columns},
    })
    members = pd.DataFrame({"gap": pd.Series(dtype="int64"), "tool_name": pd.Categorical([]),
                            "tool_family": pd.Categorical([])})
    return Gaps(frame, members, rep, 0.0, 0.0)


def subset(gaps: Gaps, kinds: Sequence[str]) -> Gaps:
    """The gaps of the given kinds; totals (active KV, baseline prefill) stay those of all gaps."""
    keep = gaps.frame["kind"].isin(list(kinds)).to_numpy()
    new_row = np.cumsum(keep) - 1
    frame = gaps.frame.loc[keep].reset_index(drop=True)
    m = gaps.members[keep[gaps.members["gap"].to_numpy()]] if len(gaps.members) else gaps.members
    members = m.assign(gap=new_row[m["gap"].to_numpy()]) if len(m) else m
    return Gaps(frame, members.reset_index(drop=True), gaps.report, gaps.active_kv, gaps.baseline_prefill)
