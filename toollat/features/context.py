"""Causal session context: what a scheduler knows about a session when a call is emitted.

A ``SessionHistory`` holds one session's completed calls. ``features(call, keys, now_ms)``
reads it at the moment a call is emitted; ``emit`` records the emission; ``observe`` adds a
result when it arrives. Training replays each session through the same object (``replay``),
making a result visible only after it arrived *and* after the last call of its parallel group
was emitted, so a call never sees its own group's results or anything later (docs/ARCHITECTURE.md, "Causality").
The Predictor keeps one ``SessionHistory`` per live session and feeds it ``observe`` calls.

Latencies are in log10 seconds with the 10 ms floor (``to_log``), like the target.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import NamedTuple

from toollat.budget import (DEFAULT_SESSION_BYTES, DICT_SLOT, FLOAT, INT, OBJECT, ODICT_SLOT, TUPLE2,
                            keys_bytes, str_bytes)
from toollat.units import LONG_Y, to_log

from .calls import Call

NAN = float("nan")
# Per-session bounds, so a long or never-observed session cannot grow without limit (the
# Predictor also bounds the sessions' total bytes): calls awaiting a result, processes that may
# be polled, distinct exact commands with their own statistics, and the session's bytes (past
# ``max_bytes`` it keeps updating what it has but adds no new tool, program or command). The
# same bounds hold when training replays a session, so features agree with serving.
MAX_PENDING = 256
MAX_POLLABLE = 64
MAX_COMMANDS = 2048
# Upper bounds (bytes) of what each entry of a session's history holds (toollat/budget.py). The
# base covers the object, the first tables of its four dicts (a dict's smallest table is larger
# than its share per entry), the deque of recent results and the running "all" statistics.
SESSION_BASE = 3072
STAT_ENTRY = DICT_SLOT + OBJECT + 4 * FLOAT + 3 * INT + TUPLE2    # + the key's value string
RESID_ENTRY = DICT_SLOT + OBJECT + 3 * FLOAT + 2 * INT + TUPLE2
PENDING_ENTRY = OBJECT + 2 * FLOAT        # + its strings and keys; dict slots are charged at their high water
POLL_ENTRY = OBJECT + 3 * FLOAT + INT     # a 3-item list
KEY_KINDS = ("tool", "fam", "prog", "sub", "cmd")


class HistoryKeys(NamedTuple):
    """What a call's latency is remembered under in its session: ``(kind, value)`` pairs, or
    None where the call has no such key (no program for a Read)."""

    tool: tuple[str, str]
    fam: tuple[str, str]
    prog: tuple[str, str] | None
    sub: tuple[str, str] | None
    cmd: tuple[str, str] | None

    @classmethod
    def for_tool(cls, tool: str, family: str) -> "HistoryKeys":
        """Keys of a result known only by its tool (``observe(session_id=..., tool=...)``)."""
        return cls(("tool", tool), ("fam", family), None, None, None)


_PER_KEY = {
    "tool": ("n", "last", "mean", "max", "ewm", "long", "err"),
    "fam": ("n", "last", "mean"),
    "prog": ("n", "last", "mean", "max"),
    "sub": ("n", "last", "mean", "max"),
    "cmd": ("n", "last", "mean"),
    "all": ("n", "last", "mean", "max", "ewm", "long", "err", "last5"),
}
# Residuals: how much slower than expected (the memory's estimate for that call) earlier calls
# were. Calls that wait on a permission prompt or a busy machine stand out this way.
_RESID_KINDS = ("tool", "prog", "all")
_RESID_STATS = ("mean", "last", "max", "slow")
SLOW_RESID = 0.7   # 5x slower than expected
CONTEXT_FEATURES: tuple[str, ...] = (
    "x_seq", "x_pending", "x_elapsed_s", "x_since_result_s", "x_since_emit_s", "x_since_turn_s",
    "x_human_gap_s", "x_turn_index", "x_calls_in_turn", "x_context_tokens",
    "x_poll_age_s", "x_poll_n", "x_poll_last", "x_since_slow_s", "x_slow_last",
    "x_pend_work_s", "x_pend_max_s", "x_pend_same_tool", "x_sib_n", "x_sib_max_exp", "x_sib_sum_exp",
    *(f"x_{kind}_{stat}" for kind, stats in _PER_KEY.items() for stat in stats),
    *(f"r_{kind}_{stat}" for kind in _RESID_KINDS for stat in _RESID_STATS),
)


class _Resid:
    __slots__ = ("n", "total", "last", "max", "n_slow")

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.last = NAN
        self.max = NAN
        self.n_slow = 0

    def add(self, r: float) -> None:
        self.n += 1
        self.total += r
        self.last = r
        self.max = r if self.n == 1 else max(self.max, r)
        self.n_slow += r >= SLOW_RESID

    def values(self) -> list[float]:
        if self.n == 0:
            return [NAN, NAN, NAN, 0.0]
        return [self.total / self.n, self.last, self.max, float(self.n_slow)]


_NO_RESID = _Resid()


class _Stat:
    __slots__ = ("n", "total", "last", "max", "ewm", "n_long", "n_err")

    def __init__(self) -> None:
        self.n = 0
        self.total = 0.0
        self.last = NAN
        self.max = NAN
        self.ewm = NAN
        self.n_long = 0
        self.n_err = 0

    def add(self, y: float, err: bool) -> None:
        self.n += 1
        self.total += y
        self.last = y
        self.max = y if self.n == 1 else max(self.max, y)
        self.ewm = y if self.n == 1 else 0.5 * self.ewm + 0.5 * y
        self.n_long += y >= LONG_Y
        self.n_err += err

    def values(self, stats: tuple[str, ...]) -> list[float]:
        out = []
        for s in stats:
            if s == "n":
                out.append(float(self.n))
            elif self.n == 0:
                out.append(NAN)
            elif s == "last":
                out.append(self.last)
            elif s == "mean":
                out.append(self.total / self.n)
            elif s == "max":
                out.append(self.max)
            elif s == "ewm":
                out.append(self.ewm)
            elif s == "long":
                out.append(self.n_long / self.n)
            elif s == "err":
                out.append(self.n_err / self.n)
        return out


_EMPTY = _Stat()


def _log_s(ms: float | None) -> float:
    return math.log10(1.0 + ms / 1000.0) if ms is not None and ms >= 0 else NAN


@dataclass(slots=True)
class _Pending:
    keys: tuple
    emitted_ms: float | None
    poll_target: str | None
    expected: float          # memory's estimate of its latency, log10 s (NaN if none)
    group: str | None


def _pending_bytes(call_id: str, p: _Pending) -> int:
    # the keys are usually shared with the feature cache: counted here as well (an upper bound)
    return PENDING_ENTRY + str_bytes(call_id) + str_bytes(p.poll_target) + str_bytes(p.group) + keys_bytes(p.keys)


class SessionHistory:
    """One session's history; not thread-safe (the Predictor locks around it)."""

    __slots__ = ("first_ms", "last_result_ms", "last_emit_ms", "n_emitted", "stats", "recent",
                 "pending", "turn_key", "calls_in_turn", "polls", "last_used", "resid", "last_slow_ms", "last_slow_y",
                 "nbytes", "max_bytes", "_slots_hw")

    def __init__(self, max_bytes: int = DEFAULT_SESSION_BYTES) -> None:
        self.first_ms: float | None = None
        self.last_result_ms: float | None = None
        self.last_emit_ms: float | None = None
        self.n_emitted = 0
        self.stats: dict[tuple, _Stat] = {}
        self.recent: deque[float] = deque(maxlen=5)
        self.pending: dict[str, _Pending] = {}
        self.turn_key: float | None = None
        self.calls_in_turn = 0
        self.polls: dict[str, list] = {}   # polled call id -> [started_ms, n_polls, last_y]
        self.last_used = 0.0
        self.resid: dict[tuple, _Resid] = {}
        self.last_slow_ms: float | None = None
        self.last_slow_y = NAN
        self.max_bytes = max_bytes
        self.nbytes = SESSION_BASE    # upper bound of what this history holds (see the *_ENTRY costs)
        self._slots_hw = [0, 0]       # most entries pending / polls ever held: their dict tables do not shrink

    # -- reading ----------------------------------------------------------------------------
    def features(self, call: Call, keys: tuple, now_ms: float | None) -> list[float]:
        f = [
            float(self.n_emitted),
            float(len(self.pending)),
            _log_s(now_ms - self.first_ms) if now_ms is not None and self.first_ms is not None else NAN,
            _log_s(now_ms - self.last_result_ms) if now_ms is not None and self.last_result_ms is not None else NAN,
            _log_s(now_ms - self.last_emit_ms) if now_ms is not None and self.last_emit_ms is not None else NAN,
            _log_s(now_ms - call.turn_started_ms) if now_ms is not None and call.turn_started_ms is not None else NAN,
            _log_s(call.turn_started_ms - call.prev_turn_ended_ms)
            if call.turn_started_ms is not None and call.prev_turn_ended_ms is not None else NAN,
            float(call.turn_index) if call.turn_index is not None else NAN,
            float(self.calls_in_turn if self.turn_key == call.turn_started_ms else 0),
            math.log10(1.0 + call.context_tokens) if call.context_tokens is not None else NAN,
        ]
        poll = self.polls.get(call.poll_of) if call.poll_of else None
        if poll is not None:
            f += [_log_s(now_ms - poll[0]) if now_ms is not None and poll[0] is not None else NAN, float(poll[1]), poll[2]]
        else:
            f += [NAN, NAN, NAN]
        f.append(_log_s(now_ms - self.last_slow_ms) if now_ms is not None and self.last_slow_ms is not None else NAN)
        f.append(self.last_slow_y)
        f += self._pending_features(call, keys, now_ms)
        stats = self.stats
        for kind, key in zip(KEY_KINDS, keys):
            f += stats.get(key, _EMPTY).values(_PER_KEY[kind]) if key is not None else [NAN] * len(_PER_KEY[kind])
        a = stats.get(("all",), _EMPTY)
        f += a.values(_PER_KEY["all"][:-1])
        f.append(sum(self.recent) / len(self.recent) if self.recent else NAN)
        resid = self.resid
        for rk in (keys[0], keys[2], ("all",)):
            f += resid.get(rk, _NO_RESID).values() if rk is not None else [NAN, NAN, NAN, 0.0]
        return f

    def _pending_features(self, call: Call, keys: tuple, now_ms: float | None) -> list[float]:
        """Work still in flight: calls emitted earlier whose results are not back yet.

        Uses only their emission and the memory's *expectation* of their latency, never their
        results: tools queue behind each other (Claude Code runs Bash calls one at a time) and a
        Codex parallel group returns together.
        """
        if not self.pending:
            return [0.0, 0.0, 0.0, 0.0, NAN, NAN]
        work = 0.0
        worst = 0.0
        same_tool = 0
        sib_n = 0
        sib_max = NAN
        sib_sum = 0.0
        for p in self.pending.values():
            exp_s = 10.0 ** p.expected if p.expected == p.expected else 0.0
            elapsed = (now_ms - p.emitted_ms) / 1000.0 if now_ms is not None and p.emitted_ms is not None else 0.0
            left = max(exp_s - elapsed, 0.0)
            work += left
            worst = max(worst, left)
            same_tool += p.keys[0] == keys[0]
            if call.parallel_group is not None and p.group == call.parallel_group:
                sib_n += 1
                sib_sum += exp_s
                if p.expected == p.expected:
                    sib_max = p.expected if sib_max != sib_max else max(sib_max, p.expected)
        return [math.log10(1.0 + work), math.log10(1.0 + worst), float(same_tool), float(sib_n), sib_max,
                math.log10(1.0 + sib_sum) if sib_n else NAN]

    # -- writing ----------------------------------------------------------------------------
    def emit(self, call: Call, keys: tuple, now_ms: float | None, expected: float = NAN) -> None:
        if now_ms is not None:
            if self.first_ms is None:
                self.first_ms = now_ms
            self.last_emit_ms = now_ms
        self.n_emitted += 1
        if self.turn_key != call.turn_started_ms:
            self.turn_key, self.calls_in_turn = call.turn_started_ms, 0
        self.calls_in_turn += 1
        if call.call_id is not None:
            old = self.pending.get(call.call_id)
            if old is not None:  # the same id again: its earlier entry is replaced (in its place)
                self.nbytes -= _pending_bytes(call.call_id, old)
            p = self.pending[call.call_id] = _Pending(keys, now_ms, call.poll_of, expected, call.parallel_group)
            self.nbytes += _pending_bytes(call.call_id, p) + self._slot(0, len(self.pending))
            if len(self.pending) > MAX_PENDING:  # results that never came: forget the oldest
                cid = next(iter(self.pending))
                self.nbytes -= _pending_bytes(cid, self.pending.pop(cid))
            if call.poll_of is None and call.family == "shell" and call.call_id not in self.polls:
                self.polls[call.call_id] = [now_ms, 0, NAN]
                self.nbytes += POLL_ENTRY + str_bytes(call.call_id) + self._slot(1, len(self.polls))
                if len(self.polls) > MAX_POLLABLE:
                    cid = next(iter(self.polls))
                    del self.polls[cid]
                    self.nbytes -= POLL_ENTRY + str_bytes(cid)

    def _slot(self, which: int, n: int) -> int:
        """The dict-slot charge for growing to ``n`` entries (only past the high water)."""
        if n > self._slots_hw[which]:
            self._slots_hw[which] = n
            return DICT_SLOT
        return 0

    def _room(self, cost: int) -> bool:
        return self.nbytes + cost <= self.max_bytes

    def observe(self, keys: tuple, latency_ms: float, is_error: bool = False, at_ms: float | None = None,
                call_id: str | None = None, expected: float = NAN) -> None:
        """A result arrived: ``latency_ms`` for the call with these keys (and id, if known).

        ``expected`` is what the memory expected for that call (log10 s), for the residuals.
        """
        y = to_log(latency_ms)
        if expected == expected:
            r = y - expected
            for rk in (keys[0], keys[2], ("all",)):
                if rk is not None:
                    st = self.resid.get(rk)
                    if st is None:
                        cost = RESID_ENTRY + str_bytes(rk[-1])
                        if rk[0] != "all" and not self._room(cost):
                            continue  # full: keep what it has, learn no new tool or program
                        st = self.resid[rk] = _Resid()
                        self.nbytes += cost
                    st.add(r)
            if r >= SLOW_RESID:
                self.last_slow_ms = at_ms
                self.last_slow_y = y
        pend = self.pending.pop(call_id, None) if call_id is not None else None
        if pend is not None:
            self.nbytes -= _pending_bytes(call_id, pend)
        for key in keys:
            if key is not None:
                s = self.stats.get(key)
                if s is None:
                    if key[0] == "cmd" and len(self.stats) >= MAX_COMMANDS:
                        continue  # a session of endless distinct commands: stop tracking new ones
                    cost = STAT_ENTRY + str_bytes(key[1])
                    if not self._room(cost):
                        continue  # full (a million distinct tool names): keep what it has
                    s = self.stats[key] = _Stat()
                    self.nbytes += cost
                s.add(y, is_error)
        a = self.stats.get(("all",))
        if a is None:
            a = self.stats[("all",)] = _Stat()  # in SESSION_BASE
        a.add(y, is_error)
        self.recent.append(y)
        if at_ms is not None:
            self.last_result_ms = at_ms if self.last_result_ms is None else max(self.last_result_ms, at_ms)
        target = pend.poll_target if pend is not None else None
        if target is not None and target in self.polls:
            p = self.polls[target]
            p[1] += 1
            p[2] = y
        elif call_id is not None and call_id in self.polls:
            self.polls[call_id][2] = y


# -- across sessions: what a project's earlier sessions took ---------------------------------
PROJECT_KINDS = ("tool", "prog", "sub", "cmd")
_PROJECT_STATS = ("n", "mean", "last", "max")
PROJECT_FEATURES: tuple[str, ...] = tuple(f"j_{k}_{s}" for k in PROJECT_KINDS for s in _PROJECT_STATS)
MAX_PROJECT_KEYS = 4096   # distinct tools/programs/commands remembered per project (LRU)
PROJECT_BASE = 1024       # the object and its OrderedDict's first table
PROJECT_ENTRY = ODICT_SLOT + OBJECT + 4 * FLOAT + 3 * INT + TUPLE2   # + the key's value string


class ProjectHistory:
    """Running latency statistics per tool, program, subcommand and exact command over every
    session of one project, fed by results in the order they arrive (the Predictor's
    ``observe``; in training, every session of the project replayed in time order). A call's
    features read it at emission, so they hold only results that arrived before: from other
    sessions as well as its own. Bounded: ``MAX_PROJECT_KEYS`` keys and ``max_bytes`` (of the
    upper bound ``nbytes`` of what it holds), least recently used keys dropped. Not thread-safe
    (the Predictor locks around it)."""

    __slots__ = ("stats", "nbytes", "max_bytes")

    def __init__(self, max_bytes: float = float("inf")) -> None:
        from collections import OrderedDict

        self.stats: "OrderedDict[tuple, _Stat]" = OrderedDict()
        self.max_bytes = max_bytes
        self.nbytes = PROJECT_BASE

    def features(self, keys: HistoryKeys) -> list[float]:
        f: list[float] = []
        for key in (keys.tool, keys.prog, keys.sub, keys.cmd):
            st = self.stats.get(key) if key is not None else None
            if st is None:
                f += [0.0, NAN, NAN, NAN]
            else:
                f += [math.log10(1.0 + st.n), st.total / st.n, st.last, st.max]
        return f

    def observe(self, keys: HistoryKeys, latency_ms: float, is_error: bool = False) -> None:
        y = to_log(latency_ms)
        for key in (keys.tool, keys.prog, keys.sub, keys.cmd):
            if key is None:
                continue
            st = self.stats.get(key)
            if st is None:
                st = self.stats[key] = _Stat()
                self.nbytes += PROJECT_ENTRY + str_bytes(key[1])
                while len(self.stats) > 1 and (len(self.stats) > MAX_PROJECT_KEYS or self.nbytes > self.max_bytes):
                    old, _ = self.stats.popitem(last=False)
                    self.nbytes -= PROJECT_ENTRY + str_bytes(old[1])
            else:
                self.stats.move_to_end(key)
            st.add(y, is_error)
