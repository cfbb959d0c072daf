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

from toollat.budget import (DEFAULT_SESSION_BYTES, DICT_SLOT, FLOAT, ODICT_SLOT, TUPLE2, keys_bytes, str_bytes,
                            tuple_bytes)
from toollat.core.units import LONG_Y, to_log

from toollat.core.call import Call

NAN = float("nan")
# Per-session bounds, so a long or never-observed session cannot grow without limit (the
# Predictor also bounds the sessions' total bytes): calls awaiting a result, processes that may
# be polled, distinct exact commands with their own statistics, and the session's bytes (past
# ``max_bytes`` it keeps updating what it has but adds no new tool, program or command). The
# same bounds hold when training replays a session, so features agree with serving.
MAX_PENDING = 256
MAX_POLLABLE = 64
MAX_COMMANDS = 2048
# Everything a history holds is plain tuples of numbers and strings (statistics, pending calls,
# polls, keys), not objects: every full garbage collection walks every tracked object, and the
# collector stops tracking a tuple whose items are untracked, never an object. A server holding
# 10,000 sessions as objects had ~160,000 tracked and spent ~100 ms a collection, holding the GIL
# while /healthz waited; as tuples an idle session is one tracked object.
#
# Upper bounds (bytes) of what each entry of a session's history holds (toollat/budget.py). The
# base covers the object, the first tables of its four dicts (a dict's smallest table is larger
# than its share per entry), the recent results and the running "all" statistics.
SESSION_BASE = 3328
STAT_ENTRY = DICT_SLOT + tuple_bytes(10) + 10 * FLOAT + TUPLE2   # + the key's value string
RESID_ENTRY = DICT_SLOT + tuple_bytes(5) + 5 * FLOAT + TUPLE2
PENDING_ENTRY = tuple_bytes(5) + 2 * FLOAT   # + its strings and keys; dict slots are charged at their high water
POLL_ENTRY = tuple_bytes(3) + 3 * FLOAT
KEY_KINDS = ("tool", "fam", "prog", "sub", "cmd")
# With the approval or polls groups a call's keys carry a sixth, its class (``call_class``):
# ``("cls", "edit")`` etc.; its statistics count how often calls of the class waited.
CLS = 5


class HistoryKeys:
    """What a call's latency is remembered under in its session: ``(kind, value)`` pairs, or
    None where the call has no such key (no program for a Read), in the order ``KEY_KINDS``.

    ``HistoryKeys(tool, fam, prog, sub, cmd)`` is a plain tuple, not a named one: instances of a
    tuple subclass stay tracked by the garbage collector, and every cached call and every call
    awaiting its result holds its keys."""

    TOOL, FAM, PROG, SUB, CMD = range(5)

    def __new__(cls, tool, fam, prog, sub, cmd) -> tuple:  # type: ignore[misc]
        return (tool, fam, prog, sub, cmd)

    @staticmethod
    def for_tool(tool: str, family: str) -> tuple:
        """Keys of a result known only by its tool (``observe(session_id=..., tool=...)``)."""
        return (("tool", tool), ("fam", family), None, None, None)


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

# The tail groups (``features.approval`` / ``subagents`` / ``polls``), read off the same history.
# Classes of a call (``args.call_class``): what it is, for what can make it wait.
CLASSES: tuple[str, ...] = ("edit", "quick", "shell", "agent", "bg", "poll")
FAST_CLASSES = ("edit", "quick")   # run in milliseconds: seconds are a wait (an approval prompt)
APPROVAL_FEATURES: tuple[str, ...] = (
    "ap_cls", "ap_cls_n", "ap_cls_wait_n", "ap_cls_wait_rate", "ap_cls_last", "ap_cls_wait_mean",
    "ap_fast_n", "ap_fast_wait_rate", "ap_fast_wait_mean",
    "ap_prog_min", "ap_sub_min", "ap_sub_wait_n", "ap_cmd_min",
    "ap_since_wait_s", "ap_since_human_s", "ap_gap_n", "ap_gap_mean",
)
SUBAGENT_FEATURES: tuple[str, ...] = ("sa_pending", "sa_fg_n", "sa_fg_mean", "sa_fg_max", "sa_fg_last")
POLL_FEATURES: tuple[str, ...] = ("bg_n", "bg_since_s", "bg_exp", "bg_left_s", "bg_poll_n", "bg_poll_mean", "bg_poll_last",
                                  "bg_poll_wait_n")
_CLASS_CODE = {("cls", c): float(i + 1) for i, c in enumerate(CLASSES)}
_FAST_KEYS = tuple(("cls", c) for c in FAST_CLASSES)
_AGENT_CLS, _BG_CLS, _POLL_CLS = ("cls", "agent"), ("cls", "bg"), ("cls", "poll")
_AGENT_FAM = ("fam", "agent")


# A key's running statistics: a tuple (n, total, last, max, ewm, n_long, n_err, min, n_wait,
# total_wait) replaced on each result (see above); counts are whole floats, so the arithmetic is
# the same as with ints. ``n_wait`` / ``total_wait``: the results of at least ``WAIT_Y`` (2 s),
# and the sum of their latencies: for a millisecond program or an edit, a wait that was not the
# program (an approval prompt, a human answering).
_NO_RESID = (0.0, 0.0, NAN, NAN, 0.0)                   # n, total, last, max, n_slow


def _resid_add(st: tuple, r: float) -> tuple:
    n = st[0] + 1.0
    return (n, st[1] + r, r, r if n == 1.0 else max(st[3], r), st[4] + (r >= SLOW_RESID))


def _resid_values(st: tuple) -> list[float]:
    n = st[0]
    if n == 0:
        return [NAN, NAN, NAN, 0.0]
    return [st[1] / n, st[2], st[3], st[4]]


_EMPTY = (0.0, 0.0, NAN, NAN, NAN, 0.0, 0.0, NAN, 0.0, 0.0)
WAIT_Y = math.log10(2.0)
_N, _TOTAL, _LAST, _MAX, _EWM, _NLONG, _NERR, _MIN, _NWAIT, _TWAIT = range(10)


def _stat_add(st: tuple, y: float, err: bool) -> tuple:
    n = st[0] + 1.0
    waited = y >= WAIT_Y
    return (n, st[1] + y, y, y if n == 1.0 else max(st[3], y), y if n == 1.0 else 0.5 * st[4] + 0.5 * y,
            st[5] + (y >= LONG_Y), st[6] + err, y if n == 1.0 else min(st[7], y), st[8] + waited,
            st[9] + (y if waited else 0.0))


def _stat_values(st: tuple, stats: tuple[str, ...]) -> list[float]:
    n = st[0]
    out = []
    for s in stats:
        if s == "n":
            out.append(n)
        elif n == 0:
            out.append(NAN)
        elif s == "last":
            out.append(st[2])
        elif s == "mean":
            out.append(st[1] / n)
        elif s == "max":
            out.append(st[3])
        elif s == "ewm":
            out.append(st[4])
        elif s == "long":
            out.append(st[5] / n)
        elif s == "err":
            out.append(st[6] / n)
    return out





def _log_s(ms: float | None) -> float:
    return math.log10(1.0 + ms / 1000.0) if ms is not None and ms >= 0 else NAN


# A call awaiting its result: (keys, emitted_ms, poll_target, expected, group); ``expected`` is
# the memory's estimate of its latency, log10 s (NaN if none).
_KEYS, _EMITTED, _POLL_TARGET, _EXPECTED, _GROUP = range(5)


def _pending_bytes(call_id: str, p: tuple) -> int:
    # the keys are usually shared with the feature cache: counted here as well (an upper bound)
    return PENDING_ENTRY + str_bytes(call_id) + str_bytes(p[_POLL_TARGET]) + str_bytes(p[_GROUP]) + keys_bytes(p[_KEYS])


class SessionHistory:
    """One session's history; not thread-safe (the Predictor locks around it)."""

    __slots__ = ("first_ms", "last_result_ms", "last_emit_ms", "n_emitted", "stats", "recent",
                 "pending", "turn_key", "calls_in_turn", "polls", "last_used", "resid", "last_slow_ms", "last_slow_y",
                 "nbytes", "max_bytes", "_pending_hw", "_polls_hw", "last_wait_ms", "gaps", "bg_last")

    def __init__(self, max_bytes: int = DEFAULT_SESSION_BYTES) -> None:
        self.first_ms: float | None = None
        self.last_result_ms: float | None = None
        self.last_emit_ms: float | None = None
        self.n_emitted = 0
        self.stats: dict[tuple, tuple] = {}
        self.recent: tuple[float, ...] = ()    # the last five results
        self.pending: dict[str, tuple] = {}
        self.turn_key: float | None = None
        self.calls_in_turn = 0
        self.polls: dict[str, tuple] = {}  # polled call id -> (started_ms (NaN: unknown), n_polls, last_y)
        self.last_used = 0.0
        self.resid: dict[tuple, tuple] = {}
        self.last_slow_ms: float | None = None
        self.last_slow_y = NAN
        self.max_bytes = max_bytes
        self.nbytes = SESSION_BASE    # upper bound of what this history holds (see the *_ENTRY costs)
        self._pending_hw = 0          # most entries pending / polls ever held: their dict tables do not shrink
        self._polls_hw = 0
        self.last_wait_ms: float | None = None   # when the last wait of a fast class ended (a human answered)
        self.gaps = (0.0, 0.0, NAN)   # human gaps before earlier turns: (n, sum of log s), the current turn's
        self.bg_last = (0.0, NAN, NAN)   # background launches: (n, the last one's emission ms, its expected log s)

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
            f += [_log_s(now_ms - poll[0]) if now_ms is not None and poll[0] == poll[0] else NAN, poll[1], poll[2]]
        else:
            f += [NAN, NAN, NAN]
        f.append(_log_s(now_ms - self.last_slow_ms) if now_ms is not None and self.last_slow_ms is not None else NAN)
        f.append(self.last_slow_y)
        f += self._pending_features(call, keys, now_ms)
        stats = self.stats
        for kind, key in zip(KEY_KINDS, keys):
            f += _stat_values(stats.get(key, _EMPTY), _PER_KEY[kind]) if key is not None else [NAN] * len(_PER_KEY[kind])
        f += _stat_values(stats.get(("all",), _EMPTY), _PER_KEY["all"][:-1])
        f.append(sum(self.recent) / len(self.recent) if self.recent else NAN)
        resid = self.resid
        for rk in (keys[0], keys[2], ("all",)):
            f += _resid_values(resid.get(rk, _NO_RESID)) if rk is not None else [NAN, NAN, NAN, 0.0]
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
        for keys_p, emitted, _, expected, group in self.pending.values():
            exp_s = 10.0 ** expected if expected == expected else 0.0
            elapsed = (now_ms - emitted) / 1000.0 if now_ms is not None and emitted is not None else 0.0
            left = max(exp_s - elapsed, 0.0)
            work += left
            worst = max(worst, left)
            same_tool += keys_p[0] == keys[0]
            if call.parallel_group is not None and group == call.parallel_group:
                sib_n += 1
                sib_sum += exp_s
                if expected == expected:
                    sib_max = expected if sib_max != sib_max else max(sib_max, expected)
        return [math.log10(1.0 + work), math.log10(1.0 + worst), float(same_tool), float(sib_n), sib_max,
                math.log10(1.0 + sib_sum) if sib_n else NAN]

    def approval_features(self, call: Call, keys: tuple, now_ms: float | None) -> list[float]:
        """``APPROVAL_FEATURES``: whether calls like this one waited earlier in the session.

        A millisecond program or an edit that took seconds waited for something else than
        itself: an approval prompt, a human answering. How often the session's calls of the
        call's class waited, how long, whether this program / prefix / command already ran
        fast (an allowed prefix runs without a prompt), since when the human last acted (the
        turn's start or the last wait that ended) and their pace between turns."""
        stats = self.stats
        cls = keys[CLS] if len(keys) > CLS else None
        st = stats.get(cls, _EMPTY) if cls is not None else _EMPTY
        n, nw = st[_N], st[_NWAIT]
        f = [float(_CLASS_CODE.get(cls, 0)), n, nw, nw / n if n else NAN, st[_LAST], st[_TWAIT] / nw if nw else NAN]
        fn = fw = tw = 0.0
        for k in _FAST_KEYS:
            s2 = stats.get(k)
            if s2 is not None:
                fn += s2[_N]
                fw += s2[_NWAIT]
                tw += s2[_TWAIT]
        f += [fn, fw / fn if fn else NAN, tw / fw if fw else NAN]
        prog = stats.get(keys[2]) if keys[2] is not None else None
        sub = stats.get(keys[3]) if keys[3] is not None else None
        cmd = stats.get(keys[4]) if keys[4] is not None else None
        f += [prog[_MIN] if prog else NAN, sub[_MIN] if sub else NAN, sub[_NWAIT] if sub else NAN,
              cmd[_MIN] if cmd else NAN]
        last_wait = self.last_wait_ms
        f.append(_log_s(now_ms - last_wait) if now_ms is not None and last_wait is not None else NAN)
        human = call.turn_started_ms
        if last_wait is not None and (human is None or last_wait > human):
            human = last_wait
        f.append(_log_s(now_ms - human) if now_ms is not None and human is not None else NAN)
        gn, gsum, cur = self.gaps
        if call.turn_started_ms != self.turn_key and cur == cur:   # a new turn: the last one's gap is past
            gn, gsum = gn + 1.0, gsum + cur
        f += [gn, gsum / gn if gn else NAN]
        return f

    def subagent_features(self, call: Call, keys: tuple, now_ms: float | None) -> list[float]:
        """``SUBAGENT_FEATURES``: subagents still running in the session, and what its earlier
        foreground subagents took (per type: the ``sub`` key's context features)."""
        running = 0
        for p in self.pending.values():
            running += p[_KEYS][1] == _AGENT_FAM
        st = self.stats.get(_AGENT_CLS, _EMPTY)
        n = st[_N]
        return [float(running), n, st[_TOTAL] / n if n else NAN, st[_MAX], st[_LAST]]

    def poll_features(self, call: Call, keys: tuple, now_ms: float | None) -> list[float]:
        """``POLL_FEATURES``: the session's background jobs (how many, since when the last one
        was launched, what the memory expected of it and how much of that is left) and its
        polls of them so far (how many, how long they blocked)."""
        n, at, expected = self.bg_last
        elapsed = (now_ms - at) / 1000.0 if now_ms is not None and at == at else NAN
        left = math.log10(1.0 + max(10.0 ** expected - elapsed, 0.0)) if expected == expected and elapsed == elapsed else NAN
        st = self.stats.get(_POLL_CLS, _EMPTY)
        pn = st[_N]
        return [n, math.log10(1.0 + elapsed) if elapsed == elapsed and elapsed >= 0 else NAN, expected, left,
                pn, st[_TOTAL] / pn if pn else NAN, st[_LAST], st[_NWAIT]]

    # -- writing ----------------------------------------------------------------------------
    def emit(self, call: Call, keys: tuple, now_ms: float | None, expected: float = NAN) -> None:
        if now_ms is not None:
            if self.first_ms is None:
                self.first_ms = now_ms
            self.last_emit_ms = now_ms
        self.n_emitted += 1
        if self.turn_key != call.turn_started_ms:
            gn, gsum, cur = self.gaps
            if cur == cur:
                gn, gsum = gn + 1.0, gsum + cur
            gap = (_log_s(call.turn_started_ms - call.prev_turn_ended_ms)
                   if call.turn_started_ms is not None and call.prev_turn_ended_ms is not None else NAN)
            self.gaps = (gn, gsum, gap)
            self.turn_key, self.calls_in_turn = call.turn_started_ms, 0
        self.calls_in_turn += 1
        if len(keys) > CLS and keys[CLS] == _BG_CLS and now_ms is not None:
            self.bg_last = (self.bg_last[0] + 1.0, now_ms, expected)
        if call.call_id is not None:
            old = self.pending.get(call.call_id)
            if old is not None:  # the same id again: its earlier entry is replaced (in its place)
                self.nbytes -= _pending_bytes(call.call_id, old)
            p = self.pending[call.call_id] = (keys, now_ms, call.poll_of, expected, call.parallel_group)
            self.nbytes += _pending_bytes(call.call_id, p)
            if len(self.pending) > self._pending_hw:
                self._pending_hw = len(self.pending)
                self.nbytes += DICT_SLOT
            if len(self.pending) > MAX_PENDING:  # results that never came: forget the oldest
                cid = next(iter(self.pending))
                self.nbytes -= _pending_bytes(cid, self.pending.pop(cid))
            if call.poll_of is None and call.family == "shell" and call.call_id not in self.polls:
                self.polls[call.call_id] = (now_ms if now_ms is not None else NAN, 0.0, NAN)
                self.nbytes += POLL_ENTRY + str_bytes(call.call_id)
                if len(self.polls) > self._polls_hw:
                    self._polls_hw = len(self.polls)
                    self.nbytes += DICT_SLOT
                if len(self.polls) > MAX_POLLABLE:
                    cid = next(iter(self.polls))
                    del self.polls[cid]
                    self.nbytes -= POLL_ENTRY + str_bytes(cid)

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
                        st = _NO_RESID
                        self.nbytes += cost
                    self.resid[rk] = _resid_add(st, r)
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
                    s = _EMPTY
                    self.nbytes += cost
                self.stats[key] = _stat_add(s, y, is_error)
        self.stats[("all",)] = _stat_add(self.stats.get(("all",), _EMPTY), y, is_error)  # in SESSION_BASE
        self.recent = (self.recent + (y,))[-5:]
        if at_ms is not None and y >= WAIT_Y and len(keys) > CLS and keys[CLS] in _FAST_KEYS:
            self.last_wait_ms = at_ms if self.last_wait_ms is None else max(self.last_wait_ms, at_ms)
        if at_ms is not None:
            self.last_result_ms = at_ms if self.last_result_ms is None else max(self.last_result_ms, at_ms)
        target = pend[_POLL_TARGET] if pend is not None else None
        if target is not None and target in self.polls:
            p = self.polls[target]
            self.polls[target] = (p[0], p[1] + 1.0, y)
        elif call_id is not None and call_id in self.polls:
            p = self.polls[call_id]
            self.polls[call_id] = (p[0], p[1], y)


# -- across sessions: what a project's earlier sessions took ---------------------------------
PROJECT_KINDS = ("tool", "prog", "sub", "cmd")
_PROJECT_STATS = ("n", "mean", "last", "max")
PROJECT_FEATURES: tuple[str, ...] = tuple(f"j_{k}_{s}" for k in PROJECT_KINDS for s in _PROJECT_STATS)
# with the approval group: whether this program / prefix / command ran fast anywhere in the
# project, and how often the project's calls of the call's class waited
PROJECT_APPROVAL_FEATURES: tuple[str, ...] = ("j_prog_min", "j_sub_min", "j_cmd_min", "j_cls_n", "j_cls_wait_rate")
MAX_PROJECT_KEYS = 4096   # distinct tools/programs/commands remembered per project (LRU)
PROJECT_BASE = 1024       # the object and its OrderedDict's first table
PROJECT_ENTRY = ODICT_SLOT + tuple_bytes(10) + 10 * FLOAT + TUPLE2   # + the key's value string


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

        self.stats: "OrderedDict[tuple, tuple]" = OrderedDict()
        self.max_bytes = max_bytes
        self.nbytes = PROJECT_BASE

    def features(self, keys: tuple) -> list[float]:
        f: list[float] = []
        for key in (keys[0], keys[2], keys[3], keys[4]):   # tool, prog, sub, cmd
            st = self.stats.get(key) if key is not None else None
            if st is None:
                f += [0.0, NAN, NAN, NAN]
            else:
                f += [math.log10(1.0 + st[0]), st[1] / st[0], st[2], st[3]]
        return f

    def approval_features(self, keys: tuple) -> list[float]:
        """``PROJECT_APPROVAL_FEATURES``."""
        f = []
        for key in (keys[2], keys[3], keys[4]):
            st = self.stats.get(key) if key is not None else None
            f.append(st[_MIN] if st is not None else NAN)
        st = self.stats.get(keys[CLS]) if len(keys) > CLS and keys[CLS] is not None else None
        f += [math.log10(1.0 + st[_N]), st[_NWAIT] / st[_N]] if st is not None else [0.0, NAN]
        return f

    def observe(self, keys: tuple, latency_ms: float, is_error: bool = False) -> None:
        y = to_log(latency_ms)
        for key in (keys[0], keys[2], keys[3], keys[4], keys[CLS] if len(keys) > CLS else None):
            if key is None:
                continue
            st = self.stats.get(key)
            if st is None:
                st = self.stats[key] = _EMPTY
                self.nbytes += PROJECT_ENTRY + str_bytes(key[1])
                while len(self.stats) > 1 and (len(self.stats) > MAX_PROJECT_KEYS or self.nbytes > self.max_bytes):
                    old, _ = self.stats.popitem(last=False)
                    self.nbytes -= PROJECT_ENTRY + str_bytes(old[1])
            else:
                self.stats.move_to_end(key)
            if key in self.stats:   # not the oldest key just dropped to make room
                self.stats[key] = _stat_add(st, y, is_error)
