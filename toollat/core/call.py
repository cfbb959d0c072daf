"""The call as the feature pipeline sees it, built from a table row or from an API request.

Everything here is known when the call is emitted. ``Call.from_request`` accepts the
Predictor's input (``tool``, ``args`` and optional context fields); ``calls_from_frame`` turns
rows of the canonical table into the same objects for training and evaluation.

Both keep only what the features read of the arguments, ``bound_args``: the first
``max_arg_chars`` characters (``features.max_arg_chars``, 64 Ki by default). Parsing, the
regular expressions and the embedding then cost the same for a 10 MiB command as for its
first 64 Ki characters, and predict the same; no call of the shared corpus is that long (the
longest arguments are 65,000 characters of JSON), so training sees every argument whole.
"""
from __future__ import annotations

import json
import math
import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from toollat.core.families import tool_family
from toollat.core.timestamps import epoch_ms, to_epoch_ms

if TYPE_CHECKING:  # tables come in from training and evaluation; serving never imports pandas
    import pandas as pd

MAX_ARG_CHARS = 65_536   # features.max_arg_chars' default (a bundle without it was trained within it)
# How deep a call's arguments may nest: the HTTP API refuses deeper ``args`` (422), the features
# walk no deeper (deeper entries are dropped). Real tool inputs nest 2-4 deep.
MAX_ARGS_DEPTH = 32


def json_depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value (0 for a scalar, 1 for a flat object or list), walked
    iteratively (no recursion, whatever the input), stopping once it exceeds ``limit``."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            children = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        stack.extend((c, d + 1) for c in children if isinstance(c, (dict, list)))
    return deepest


def bound_args(args: dict[str, Any] | None, limit: int = MAX_ARG_CHARS) -> dict[str, Any] | None:
    """The arguments as the features read them: their first ``limit`` characters.

    Walked in order, a string or a key counts its characters and every other value (numbers,
    objects, arrays) one; a string is cut to what is left of the budget, and entries after the
    budget is spent, or nested deeper than ``MAX_ARGS_DEPTH``, are dropped. Within the limit the
    same object comes back (no copy), so ``{"command": c}`` reads as
    ``{"command": c[:limit - 1 - len("command")]}``."""
    if args is None or _within(args, [limit], 0):
        return args
    return _cut(args, [limit], 0)


def _within(v: Any, left: list[int], depth: int) -> bool:
    if isinstance(v, str):
        left[0] -= len(v)
        return left[0] >= 0
    left[0] -= 1
    if left[0] < 0 or (depth >= MAX_ARGS_DEPTH and isinstance(v, (dict, list, tuple)) and len(v)):
        return False
    if isinstance(v, dict):
        for k, x in v.items():
            left[0] -= len(k) if isinstance(k, str) else 1
            if left[0] < 0 or not _within(x, left, depth + 1):
                return False
    elif isinstance(v, (list, tuple)):
        for x in v:
            if not _within(x, left, depth + 1):
                return False
    return True


def _cut(v: Any, left: list[int], depth: int) -> Any:
    if isinstance(v, str):
        s = v[:max(left[0], 0)]
        left[0] -= len(s)
        return s
    left[0] -= 1
    if isinstance(v, dict):
        out: dict = {}
        if depth < MAX_ARGS_DEPTH:
            for k, x in v.items():
                cost = len(k) if isinstance(k, str) else 1
                if cost >= left[0]:   # no room for the key and at least one character of its value
                    break
                left[0] -= cost
                out[k] = _cut(x, left, depth + 1)
        return out
    if isinstance(v, (list, tuple)):
        items: list = []
        if depth < MAX_ARGS_DEPTH:
            for x in v:
                if left[0] <= 0:
                    break
                items.append(_cut(x, left, depth + 1))
        return items
    return v


@dataclass(slots=True)
class Call:
    tool: str
    args: dict[str, Any] | None        # None when the log has no arguments (public TraceLab rows)
    family: str
    agent: str | None = None
    model: str | None = None
    permission_mode: str | None = None
    session_id: str | None = None
    call_id: str | None = None
    emitted_ms: float | None = None    # epoch ms; the Predictor uses "now" when absent
    turn_started_ms: float | None = None
    prev_turn_ended_ms: float | None = None
    turn_index: int | None = None
    context_tokens: float | None = None
    parallel_group: str | None = None
    parallel_size: int | None = None
    poll_of: str | None = None          # Codex write_stdin: the call whose process it polls
    project: str | None = None          # the project across sessions (cross-session memory key)

    @classmethod
    def from_request(cls, d: dict[str, Any], max_arg_chars: int = MAX_ARG_CHARS) -> "Call":
        """From a Predictor/API request: ``{"tool": ..., "args": {...} | "json", ...}``."""
        tool = d.get("tool") or d.get("tool_name")
        if not isinstance(tool, str) or not tool:
            raise ValueError("a call needs a non-empty string 'tool'")
        args = d.get("args", {})
        if isinstance(args, str):
            try:
                args = orjson.loads(args) if args.strip() else {}   # a serving call's parse: ~6x json's speed
            except json.JSONDecodeError as e:                           # orjson's error is json's subclass
                raise ValueError(f"'args' is not valid JSON: {e.msg}") from None
        if args is not None and not isinstance(args, dict):
            args = {"value": args}
        return cls(
            tool=tool,
            args=bound_args(args, max_arg_chars),
            family=tool_family(tool),
            agent=_str(d.get("agent")),
            model=_str(d.get("model")),
            permission_mode=_str(d.get("permission_mode")),
            session_id=_str(d.get("session_id")),
            call_id=_str(d.get("call_id")),
            emitted_ms=to_epoch_ms(d.get("emitted_at")),
            turn_started_ms=to_epoch_ms(d.get("turn_started_at")),
            prev_turn_ended_ms=to_epoch_ms(d.get("prev_turn_ended_at")),
            turn_index=_int(d.get("turn_index")),
            context_tokens=_num(d.get("context_tokens")),
            parallel_group=_str(d.get("parallel_group")),
            parallel_size=_int(d.get("parallel_size")),
            poll_of=_str(d.get("poll_of")),
            project=_str(d.get("project")) or _last_folder(d.get("cwd")),
        )


def _last_folder(cwd: Any) -> str | None:
    """A project name from a working directory: its last folder (what ingest records)."""
    if not isinstance(cwd, str) or not cwd.strip("/\\ "):
        return None
    return cwd.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1] or None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) and v else None


def _num(v: Any) -> float | None:
    """A finite number (Python or numpy), else None; booleans are not numbers here."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        return None
    return float(v)


def _int(v: Any) -> int | None:
    n = _num(v)
    return int(n) if n is not None else None


def _parse_args(text: Any) -> dict[str, Any] | None:
    if not isinstance(text, str):
        return None
    try:
        v = json.loads(text)
    except json.JSONDecodeError:
        return {"raw": text}
    return v if isinstance(v, dict) else {"value": v}


def table_projects(df: pd.DataFrame) -> list[str | None]:
    """The project of each call of a canonical table: its recorded project, else its source."""
    n = len(df)
    projects = df["project"].tolist() if "project" in df else [None] * n
    sources = df["source"].tolist() if "source" in df else [None] * n
    return [_str(p) or _str(s) for p, s in zip(projects, sources)]


def calls_from_frame(df: pd.DataFrame, max_arg_chars: int = MAX_ARG_CHARS) -> list[Call]:
    """Canonical-table rows -> Calls (same order), arguments bounded like ``Call.from_request``'s."""
    emitted = epoch_ms(df["emitted_at"])
    started = epoch_ms(df["turn_started_at"]) if "turn_started_at" in df else np.full(len(df), np.nan)
    prev_end = epoch_ms(df["prev_turn_ended_at"]) if "prev_turn_ended_at" in df else np.full(len(df), np.nan)

    def col(name):
        return df[name].tolist() if name in df else [None] * len(df)

    projects = table_projects(df)

    out = []
    for i, (tool, fam, args, agent, model, perm, sid, cid, tidx, ctx, grp, psize, poll) in enumerate(zip(
            col("tool_name"), col("tool_family"), col("args"), col("agent"), col("model"),
            col("permission_mode"), col("session_id"), col("call_id"), col("turn_index"),
            col("context_tokens"), col("parallel_group"), col("parallel_size"), col("poll_of"))):
        project = projects[i]
        out.append(Call(
            tool=tool,
            args=bound_args(_parse_args(args), max_arg_chars),
            family=fam if isinstance(fam, str) else tool_family(tool),
            agent=_str(agent),
            model=_str(model),
            permission_mode=_str(perm),
            session_id=_str(sid),
            call_id=_str(cid),
            emitted_ms=None if math.isnan(emitted[i]) else emitted[i],
            turn_started_ms=None if math.isnan(started[i]) else started[i],
            prev_turn_ended_ms=None if math.isnan(prev_end[i]) else prev_end[i],
            turn_index=_int(tidx),
            context_tokens=_num(ctx),
            parallel_group=_str(grp),
            parallel_size=_int(psize),
            poll_of=_str(poll),
            project=project,
        ))
    return out
