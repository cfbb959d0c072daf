"""Engine-realistic KV replay: many sessions at once share a fixed GPU pool of KV blocks.

``simulation.simulator`` decides every gap alone with unlimited memory. Here, as in a serving
engine, paused requests compete for one pool of ``pool_tokens`` (blocks of ``BLOCK_TOKENS``),
and a policy only chooses *which* paused KV to evict when the pool is full: every hint is a
soft priority under memory pressure, never a pin.

**Timeline** (``Timeline.from_calls``): the gaps of ``gaps.build_gaps`` (tool and human),
one stream per agent chain. A request pauses at a gap's start holding its context (the gap's
``tokens``, the logs' ``context_tokens``; where a session has none, the documented estimate of
``gaps``: stream, session, table median, then ``DEFAULT_CONTEXT_TOKENS``) and resumes at the
gap's end; between two gaps it is active and its KV is pinned. An active stretch longer than
``max_active_s`` is idle time the logs cannot see as a gap (``gaps`` docstring): the request
pauses after ``max_active_s`` and resumes at the next gap (kind ``idle``; it is predicted with
the human-wait distribution). Overlapping gaps of a stream are clipped to start at the previous
end. Two sessions with the same id in different sources are told apart by source (counted).

**Concurrency**: the logged sessions rarely overlap, so they are packed onto ``concurrency``
lanes: sessions in order of their first event, each placed on the lane that frees first,
shifted in time to start when that lane's previous session ended (all streams of a session move
together, so its own timeline is unchanged). About ``concurrency`` sessions are then live at
every moment, each on its logged timeline.

**Replay** (``replay``), events in time order (at equal times, each stream's own order):

- pause: the request's context becomes a paused entry, evictable; its growth since it resumed
  (fresh tokens) is allocated now.
- resume: GPU-resident blocks are hits; blocks in the host tier are loaded back (host hits,
  host traffic); the rest is re-prefilled. The request is active again (all its blocks pinned)
  until its next pause; after a stream's last pause it finishes and its KV is freed.
- when the pool is over capacity, blocks are evicted from the paused entry with the largest
  eviction key, from its tail (what is left is a prefix, so a partial entry still hits). If
  only active KV is left, the overflow is counted (``overcommitted_events``) and allowed.
- with a host tier (``host_tokens``), GPU evictions are written to it (``to_host``), and it
  evicts by the same keys; a resumed entry's host copy is freed.

**Eviction keys** (larger is evicted first; ties by earlier pause):

- ``lru``: the least recently paused first (vLLM's and SGLang's default).
- ``static_ttl`` T: protected for T after the pause, then LRU (soft pin).
- ``belady``: the furthest true resume first (the bound: optimal for GPU block hits without a
  host tier, since every block of an entry is next used at the same instant; in a pool smaller
  than the active KV alone, where whole requests arrive at once, only nearly; in tokens, up
  to the partial last block of a context: within 1e-6 in hit rate on the shared corpus).
- ``per_tool`` and ``toollat`` (``Predicted``): **the priority rule**. Holding a paused block
  until its request resumes saves one re-prefilled token at a price of (resume - now)
  token-seconds, so its value density is 1 / (expected resume - now): evict the largest
  *expected resume time*. Given the gap's predicted quantiles as a discrete distribution (the
  support of ``toollat.hints``: mass between two levels at the upper value, the tail at twice
  the top value) and the time ``a`` already waited, the expected resume is
  ``pause + E[G | G > a]``, a step function of ``a`` that changes at the support points; past
  the whole support it is infinite. That is ``rule="mean"``; the default ``"index"``
  refines it for heavy tails (a p99 of minutes makes the mean large for a call that most likely
  returns in a second): the fewest token-seconds held per hit over any holding horizon h,
  ``min_h E[min(G - a, h) | G > a] / P(G <= a + h | G > a)``, with h and ``a`` at the support
  points, and the key ``pause + a + index``. For a certain gap both equal Belady's key. On top, the hint of ``toollat.hints.decide_plans`` applied
  to the tiers: ``keep`` T ranks by expected resume for T, then is demoted (below every kept
  entry) and goes to the host tier on eviction if its ``then`` is ``offload``; ``offload``
  copies the KV to the host tier at the pause and is demoted in GPU memory; ``drop`` is demoted
  and never written to host memory. ``per_tool`` is the same rule on the per-tool training
  distribution (the fair baseline), ``toollat`` on the Predictor's causal per-call predictions.
  Human and idle waits get the bundle's training distribution of human waits in both.

**Metrics** (``replay`` -> dict): ``hit_rate`` = GPU-hit tokens / resumed context tokens;
``host_hit_rate``; ``reprefill_tokens``; ``prefill_amplification`` = (fresh + re-prefilled) /
fresh, fresh being every stream's first context and later growth; ``host_traffic_tokens``
(written + loaded); ``cost_tokens`` = re-prefilled + ``transfer_cost`` x host traffic
(``transfer_cost`` per token moved one way, default ``offload_cost_s / (2 breakeven_s)`` of
the hint costs: a round trip costs O where a re-prefill costs B).
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from toollat.hints import HintCosts, decide_plans

from .gaps import MAX_ACTIVE_S, PREDICTION_COLUMNS, build_gaps

BLOCK_TOKENS = 16
LEVELS: tuple[float, ...] = (0.1, 0.5, 0.9, 0.99)
QUANTILE_COLUMNS = PREDICTION_COLUMNS[:4]
POOL_POLICIES: tuple[str, ...] = ("lru", "static_ttl", "per_tool", "toollat", "belady")
DEFAULT_POOL_FRACTIONS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)
DEFAULT_STATIC_TTL_S = 300.0   # a common engine default (5 min)
_DEMOTED = 1                   # key class of demoted entries (evicted before kept ones)


# -- the timeline -------------------------------------------------------------------------------
@dataclass
class Timeline:
    """One row per pause, grouped by stream and in time order within a stream: ``stream``
    (int), ``start`` and ``end`` (seconds), ``tokens`` (context held), ``kind`` (tool, human,
    idle), ``gap_row`` (the row in the gaps frame, -1 for idle pauses), ``session``."""

    stream: np.ndarray
    start: np.ndarray
    end: np.ndarray
    tokens: np.ndarray
    kind: np.ndarray
    gap_row: np.ndarray
    session: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.stream)
        for name in ("start", "end", "tokens", "kind", "gap_row", "session"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"timeline: {name} has {len(getattr(self, name))} rows, stream has {n}")
        self.start = np.asarray(self.start, dtype=np.float64)
        self.end = np.asarray(self.end, dtype=np.float64)
        self.tokens = np.asarray(self.tokens, dtype=np.float64)
        if n and not (np.isfinite(self.start).all() and np.isfinite(self.end).all()):
            raise ValueError("timeline: start and end must be finite")
        if n and (self.end < self.start).any():
            raise ValueError("timeline: a pause ends before it starts")
        if n and not (np.isfinite(self.tokens).all() and (self.tokens >= 0).all()):
            raise ValueError("timeline: tokens must be finite and >= 0")

    def __len__(self) -> int:
        return len(self.stream)

    @classmethod
    def of(cls, rows: Sequence[tuple[Any, float, float, float]], kind: str = "tool") -> "Timeline":
        """From ``(stream, start_s, end_s, tokens)`` rows (tests, hand-made timelines)."""
        rows = sorted(rows, key=lambda r: (str(r[0]), r[1]))
        names = {s: i for i, s in enumerate(dict.fromkeys(str(r[0]) for r in rows))}
        return cls(np.array([names[str(r[0])] for r in rows], dtype=np.int64), np.array([r[1] for r in rows]),
                   np.array([r[2] for r in rows]), np.array([r[3] for r in rows]),
                   np.array([kind] * len(rows), dtype=object), np.full(len(rows), -1, dtype=np.int64),
                   np.array([str(r[0]) for r in rows], dtype=object))

    @classmethod
    def from_gaps(cls, frame: pd.DataFrame, concurrency: int | None = None,
                  max_active_s: float = MAX_ACTIVE_S) -> "Timeline":
        """From a ``gaps.build_gaps`` frame (module docstring: idle pauses, clipping, lanes)."""
        rep: dict[str, Any] = {"overlapping_gaps_clipped": 0, "idle_pauses": 0}
        f = frame.reset_index(drop=True)
        origin = f["start"].min() if len(f) else pd.Timestamp(0, tz="UTC")
        start = ((f["start"] - origin).dt.total_seconds()).to_numpy(dtype=np.float64)
        end = ((f["end"] - origin).dt.total_seconds()).to_numpy(dtype=np.float64)
        codes, _ = pd.factorize(f["stream"])
        streams, starts, ends, toks, kinds, rows, sessions = [], [], [], [], [], [], []
        session = f["session_id"].astype(str).to_numpy()
        kind = f["kind"].astype(str).to_numpy()
        tokens = f["tokens"].to_numpy(dtype=np.float64)
        prev_stream, prev_end = -1, -math.inf
        for i in range(len(f)):  # frame is in stream order, by start within a stream
            s = int(codes[i])
            a, b = start[i], end[i]
            if s == prev_stream:
                if a < prev_end:
                    rep["overlapping_gaps_clipped"] += 1
                    a = prev_end
                    b = max(b, a)
                elif a - prev_end > max_active_s:
                    # hidden idle time: pause after max_active_s, resume at this gap's start
                    streams.append(s); starts.append(prev_end + max_active_s); ends.append(a)
                    toks.append(tokens[i - 1]); kinds.append("idle"); rows.append(-1); sessions.append(session[i])
                    rep["idle_pauses"] += 1
            streams.append(s); starts.append(a); ends.append(b); toks.append(tokens[i])
            kinds.append(kind[i]); rows.append(i); sessions.append(session[i])
            prev_stream, prev_end = s, b
        tl = cls(np.array(streams, dtype=np.int64), np.array(starts), np.array(ends), np.array(toks),
                 np.array(kinds, dtype=object), np.array(rows, dtype=np.int64), np.array(sessions, dtype=object), rep)
        if concurrency is not None:
            tl.pack(concurrency)
        return tl

    def pack(self, concurrency: int) -> None:
        """Shift sessions onto ``concurrency`` lanes (module docstring)."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if not len(self):
            return
        df = pd.DataFrame({"session": self.session, "start": self.start, "end": self.end})
        span = df.groupby("session", sort=False).agg(first=("start", "min"), last=("end", "max"))
        span = span.sort_values("first", kind="stable")
        lanes = [(0.0, k) for k in range(concurrency)]  # (free at, lane)
        heapq.heapify(lanes)
        shift = {}
        for sid, (first, last) in zip(span.index, span.to_numpy()):
            free, lane = heapq.heappop(lanes)
            shift[sid] = free - first
            heapq.heappush(lanes, (free + (last - first), lane))
        d = np.array([shift[s] for s in self.session], dtype=np.float64)
        self.start = self.start + d
        self.end = self.end + d
        self.report["concurrency"] = concurrency
        self.report["span_s"] = float(self.end.max() - self.start.min())

    def peak_demand_tokens(self) -> float:
        """The most context all streams hold at once if nothing is ever evicted: a stream holds
        its latest context from its first pause to its last resume."""
        if not len(self):
            return 0.0
        last_end = pd.Series(self.end).groupby(self.stream).max().to_dict()
        ev = sorted([(float(self.start[i]), 0, i) for i in range(len(self))]
                    + [(float(e), 1, int(s)) for s, e in last_end.items()])
        held: dict[int, float] = {}
        total = peak = 0.0
        for _, kind, x in ev:
            if kind == 0:
                s = int(self.stream[x])
                total += self.tokens[x] - held.get(s, 0.0)
                held[s] = float(self.tokens[x])
                peak = max(peak, total)
            else:
                total -= held.pop(x, 0.0)
        return float(peak)


# -- policies -------------------------------------------------------------------------------------
class LRU:
    name = "lru"

    def key(self, i: int, pause: float, t: float, tl: Timeline) -> tuple[tuple, float]:
        return (0, -pause), math.inf

    def to_host(self, i: int, t: float) -> bool:
        return True

    def offload_at_pause(self, i: int) -> bool:
        return False


class StaticTTL(LRU):
    def __init__(self, ttl_s: float = DEFAULT_STATIC_TTL_S) -> None:
        if not ttl_s >= 0:
            raise ValueError("a static TTL is >= 0 seconds")
        self.ttl_s = float(ttl_s)
        self.name = "static_ttl"

    def key(self, i, pause, t, tl):
        if t < pause + self.ttl_s:
            return (0, -pause), pause + self.ttl_s
        return (_DEMOTED, -pause), math.inf


class Belady(LRU):
    name = "belady"

    def key(self, i, pause, t, tl):
        return (0, float(tl.end[i])), math.inf


class Predicted(LRU):
    """The priority rule on per-pause predicted quantiles (ms, at ``LEVELS``), plus the hint
    (module docstring). Rows without a finite prediction rank as LRU among demoted entries."""

    def __init__(self, name: str, quantiles_ms: np.ndarray, costs: HintCosts = HintCosts(),
                 levels: Sequence[float] = LEVELS, hints: bool = True, rule: str = "index") -> None:
        self.name = name
        q = np.sort(np.asarray(quantiles_ms, dtype=np.float64), axis=1)
        self.known = np.isfinite(q).all(axis=1)
        q = np.where(self.known[:, None], np.maximum(q, 0.0), 0.0) / 1000.0
        levels = np.asarray(levels, dtype=np.float64)
        probs = np.diff(np.concatenate([[0.0], levels, [1.0]]))
        self.support = np.concatenate([q, q[:, -1:] * 2.0], axis=1)          # (n, m) seconds
        # E[G | G > s_j] for each j = support points already passed (0 .. m-1)
        m = self.support.shape[1]
        w = self.support * probs
        tail_mass = np.cumsum(probs[::-1])[::-1]                               # P(G >= s_j)
        tail_sum = np.cumsum(w[:, ::-1], axis=1)[:, ::-1]
        self.cond_mean = tail_sum / tail_mass                                  # (n, m)
        # the index: token-seconds held per hit, minimised over holding horizons (see docstring)
        n_ = len(q)
        self.index = np.full((n_, m), np.inf)
        for j in range(m):
            a = self.support[:, j - 1] if j else np.zeros(n_)
            mass = held = np.zeros(n_)
            for k in range(j, m):
                mass = mass + probs[k]
                held = held + probs[k] * (self.support[:, k] - a)
                rest = tail_mass[j] - mass
                cost = held + rest * (self.support[:, k] - a)
                self.index[:, j] = np.minimum(self.index[:, j], cost / mass)
        self.rule = rule
        self.action = np.zeros(len(q), dtype=np.int8)   # 0 keep, 1 offload, 2 drop
        self.ttl_s = np.full(len(q), math.inf)
        self.then_offload = np.ones(len(q), dtype=bool)
        if hints and self.known.any():
            names, ttl_ms, then = decide_plans(tuple(levels), q[self.known] * 1000.0, costs)
            code = {"keep": 0, "offload": 1, "drop": 2}
            self.action[self.known] = [code[a] for a in names]
            self.ttl_s[self.known] = np.where(np.asarray(names) == "keep", ttl_ms / 1000.0, 0.0)
            self.then_offload[self.known] = [t != "drop" for t in then]
        self._m = m

    def key(self, i, pause, t, tl):
        if not self.known[i]:
            return (_DEMOTED, math.inf, -pause), math.inf
        a = t - pause
        sup = self.support[i]
        j = int(np.searchsorted(sup, a, side="right"))      # support points already passed (<= a)
        if j >= self._m:
            expected = math.inf
        elif self.rule == "index":
            expected = pause + (sup[j - 1] if j else 0.0) + self.index[i, j]
        else:
            expected = pause + self.cond_mean[i, j]
        nxt = pause + sup[j] if j < self._m else math.inf
        demoted = self.action[i] != 0 or a >= self.ttl_s[i]
        if self.action[i] == 0 and a < self.ttl_s[i]:
            nxt = min(nxt, pause + self.ttl_s[i])
        return ((_DEMOTED if demoted else 0), expected, -pause), nxt

    def to_host(self, i, t):
        return bool(self.action[i] == 1 or (self.action[i] == 0 and self.then_offload[i]))

    def offload_at_pause(self, i):
        return bool(self.action[i] == 1)


# -- the replay -----------------------------------------------------------------------------------
class _Tier:
    """Blocks of paused entries in one memory tier, evicted by the largest key (lazy heap)."""

    def __init__(self, capacity_blocks: float) -> None:
        self.capacity = capacity_blocks
        self.used = 0
        self.heap: list = []
        self.version: dict[int, int] = {}

    def push(self, i: int, key: tuple) -> None:
        v = self.version.get(i, 0) + 1
        self.version[i] = v
        heapq.heappush(self.heap, (tuple(-k for k in key), v, i))

    def remove(self, i: int) -> None:
        self.version.pop(i, None)

    def pop_max(self) -> int | None:
        while self.heap:
            _, v, i = heapq.heappop(self.heap)
            if self.version.get(i) == v:
                self.version.pop(i)
                return i
        return None


def _blocks(tokens: float, block: int) -> int:
    return int(math.ceil(tokens / block)) if tokens > 0 else 0


def replay(tl: Timeline, policy, pool_tokens: float, host_tokens: float = 0.0, *,
           block_tokens: int = BLOCK_TOKENS, transfer_cost: float | None = None,
           costs: HintCosts = HintCosts()) -> dict[str, Any]:
    """Replay the timeline under one policy and pool size (module docstring)."""
    if not pool_tokens > 0:
        raise ValueError("pool_tokens must be > 0")
    if host_tokens < 0:
        raise ValueError("host_tokens must be >= 0")
    if transfer_cost is None:
        transfer_cost = costs.offload_cost_s / (2.0 * costs.breakeven_s)
    n = len(tl)
    cap = int(pool_tokens // block_tokens)
    gpu, host = _Tier(cap), _Tier(int(host_tokens // block_tokens))
    nblk = np.array([_blocks(x, block_tokens) for x in tl.tokens], dtype=np.int64)
    g = np.zeros(n, dtype=np.int64)        # GPU-resident blocks of a paused entry (a prefix)
    h_lo = np.zeros(n, dtype=np.int64)     # host segment [h_lo, h_hi)
    h_hi = np.zeros(n, dtype=np.int64)
    paused = np.zeros(n, dtype=bool)
    key_of: dict[int, tuple] = {}
    changes: list = []                      # (time, entry): an entry's key may change
    active: dict[int, int] = {}             # stream -> pinned blocks of its active request
    st = {"gpu_hit": 0.0, "host_hit": 0.0, "reprefill": 0.0, "resumed": 0.0, "fresh": 0.0,
          "host_write": 0.0, "host_read": 0.0, "overcommitted_events": 0, "evictions": 0,
          "requests_larger_than_pool": int((nblk > cap).sum())}

    def refresh(i: int, t: float) -> None:
        key, nxt = policy.key(i, float(tl.start[i]), t, tl)
        key_of[i] = key
        if g[i] > 0:
            gpu.push(i, key)
        if h_hi[i] > h_lo[i]:
            host.push(i, key)
        if nxt < math.inf:
            heapq.heappush(changes, (nxt, i))

    def advance(t: float) -> None:
        while changes and changes[0][0] <= t:
            _, i = heapq.heappop(changes)
            if paused[i]:
                refresh(i, t)

    def host_make_room(need: int) -> None:
        while host.used + need > host.capacity:
            j = host.pop_max()
            if j is None:
                return
            k = min(int(h_hi[j] - h_lo[j]), host.used + need - host.capacity)
            h_hi[j] -= k
            host.used -= k
            if h_hi[j] > h_lo[j]:
                host.push(j, key_of[j])

    def to_host(j: int, lo: int, hi: int, t: float) -> None:
        """Write GPU blocks [lo, hi) of entry j to the host tier (what it lacks of them)."""
        if host.capacity <= 0 or hi <= lo:
            return
        if h_hi[j] > h_lo[j] and h_lo[j] <= hi and h_hi[j] >= lo:    # overlaps or touches
            new_lo, new_hi = min(lo, h_lo[j]), max(hi, h_hi[j])
        else:
            host.used -= int(h_hi[j] - h_lo[j])
            h_lo[j] = h_hi[j] = 0
            new_lo, new_hi = lo, hi
        add = int((new_hi - new_lo) - (h_hi[j] - h_lo[j]))
        if add > host.capacity:
            return
        host.remove(j)
        host_make_room(add)
        h_lo[j], h_hi[j] = new_lo, new_hi
        host.used += add
        st["host_write"] += add
        host.push(j, key_of[j])

    def make_room(t: float) -> None:
        while gpu.used > gpu.capacity:
            j = gpu.pop_max()
            if j is None:
                st["overcommitted_events"] += 1
                return
            k = min(int(g[j]), gpu.used - gpu.capacity)
            lo, hi = int(g[j] - k), int(g[j])
            g[j] = lo
            gpu.used -= k
            st["evictions"] += 1
            if policy.to_host(j, t):
                to_host(j, lo, hi, t)
            if g[j] > 0:
                gpu.push(j, key_of[j])

    # events: (time, order, 1 = pause | 0 = resume, entry). Rows are grouped by stream in time
    # order, so order 2i (pause i) < 2i+1 (resume i) < 2i+2 keeps each stream's sequence at
    # equal times (a zero gap; a request resuming and pausing again at once).
    events = sorted([(float(tl.start[i]), 2 * i, 1, i) for i in range(n)]
                    + [(float(tl.end[i]), 2 * i + 1, 0, i) for i in range(n)])
    last_tokens: dict[int, float] = {}      # stream -> context at its last pause
    is_last = np.ones(n, dtype=bool)         # rows are grouped by stream, in time order
    if n > 1:
        is_last[:-1] = tl.stream[1:] != tl.stream[:-1]
    for t, _, kind, i in events:
        s = int(tl.stream[i])
        advance(t)
        if kind == 1:
            before = active.pop(s, None)
            # fresh prefill: a stream's first context, then its growth
            st["fresh"] += max(float(tl.tokens[i]) - last_tokens.get(s, 0.0), 0.0)
            last_tokens[s] = float(tl.tokens[i])
            gpu.used += int(nblk[i]) - (before or 0)
            g[i] = nblk[i]
            paused[i] = True
            refresh(i, t)
            if policy.offload_at_pause(i):
                to_host(i, 0, int(nblk[i]), t)
            make_room(t)
        else:
            paused[i] = False
            gpu.remove(i)
            host.remove(i)
            need = int(nblk[i])
            hit = int(g[i])
            hh = int(max(0, h_hi[i] - hit)) if (h_hi[i] > h_lo[i] and h_lo[i] <= hit) else 0
            hh = min(hh, need - hit)
            tok = float(tl.tokens[i])
            gpu_tok = min(hit * block_tokens, tok)
            host_tok = min((hit + hh) * block_tokens, tok) - gpu_tok
            st["gpu_hit"] += gpu_tok
            st["host_hit"] += host_tok
            st["host_read"] += hh
            st["reprefill"] += tok - gpu_tok - host_tok
            st["resumed"] += tok
            host.used -= int(h_hi[i] - h_lo[i])
            h_lo[i] = h_hi[i] = 0
            g[i] = 0
            if is_last[i]:       # the stream's last request: it finishes, its KV is freed
                gpu.used -= hit
            else:
                gpu.used += need - hit
                active[s] = need
                make_room(t)
    resumed = st["resumed"]
    traffic = (st["host_write"] + st["host_read"]) * block_tokens
    return {
        "hit_rate": st["gpu_hit"] / resumed if resumed else None,
        "host_hit_rate": st["host_hit"] / resumed if resumed else None,
        "reprefill_tokens": st["reprefill"],
        "resumed_tokens": resumed,
        "fresh_tokens": st["fresh"],
        "prefill_amplification": (st["fresh"] + st["reprefill"]) / st["fresh"] if st["fresh"] else None,
        "host_traffic_tokens": traffic,
        "cost_tokens": st["reprefill"] + transfer_cost * traffic,
        "gpu_hit_tokens": st["gpu_hit"],
        "evictions": st["evictions"],
        "overcommitted_events": st["overcommitted_events"],
        "requests_larger_than_pool": st["requests_larger_than_pool"],
    }


# -- the study: every policy at every pool size ----------------------------------------------------
@dataclass
class PoolResult:
    pools: list[int]
    host_tokens: float
    policies: dict[str, list[dict[str, Any]]]   # name -> one metrics dict per pool
    data: dict[str, Any]
    headline: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        from .simulator import _json_ready

        return _json_ready({"headline": self.headline, "policies": self.policies, "data": self.data,
                            "pools": self.pools, "host_tokens": self.host_tokens})


def gap_closed(policies: dict[str, list[dict[str, Any]]], name: str, margin: float = 0.02) -> float | None:
    """Mean over pool sizes where Belady beats LRU by >= ``margin`` hit rate of
    (policy - LRU) / (Belady - LRU); None if there is no such pool size."""
    vals = []
    for p, lru, bel in zip(policies[name], policies["lru"], policies["belady"]):
        b, l, x = bel["hit_rate"], lru["hit_rate"], p["hit_rate"]
        if None not in (b, l, x) and b - l >= margin:
            vals.append((x - l) / (b - l))
    return float(np.mean(vals)) if vals else None


def run_pools(tl: Timeline, policies: Sequence, pools: Sequence[float], host_tokens: float = 0.0,
              costs: HintCosts = HintCosts(), data: dict[str, Any] | None = None) -> PoolResult:
    """Every policy at every pool size, and the headline (``gap_closed``)."""
    out = {p.name: [dict(pool_tokens=int(n), **replay(tl, p, n, host_tokens, costs=costs)) for n in pools]
           for p in policies}
    head: dict[str, Any] = {"pools": [int(n) for n in pools]}
    if "lru" in out and "belady" in out:
        head["gap_closed_vs_lru"] = gap_closed(out, "toollat") if "toollat" in out else None
        head["gap_closed_vs_lru_per_tool"] = gap_closed(out, "per_tool") if "per_tool" in out else None
        head["pools_where_belady_beats_lru"] = [int(n) for n, l, b in zip(pools, out["lru"], out["belady"])
                                                if l["hit_rate"] is not None and b["hit_rate"] - l["hit_rate"] >= 0.02]
    if "toollat" in out and "per_tool" in out:
        head["toollat_at_or_above_per_tool_everywhere"] = all(
            (a["hit_rate"] or 0) >= (b["hit_rate"] or 0) - 1e-12 for a, b in zip(out["toollat"], out["per_tool"]))
    for name, rows in out.items():
        head[f"hit_rate_{name}"] = [r["hit_rate"] for r in rows]
    return PoolResult([int(n) for n in pools], host_tokens, out, dict(data or {}), head)


def disambiguate_sessions(calls: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Session ids shared by calls of different sources are prefixed with the source; returns
    the table and how many ids were shared."""
    if "source" not in calls.columns or calls.empty:
        return calls, 0
    per = calls.groupby("session_id")["source"].nunique()
    shared = per[per > 1].index
    if not len(shared):
        return calls, 0
    calls = calls.copy()
    hit = calls["session_id"].isin(shared)
    calls.loc[hit, "session_id"] = calls.loc[hit, "source"].astype(str) + "/" + calls.loc[hit, "session_id"].astype(str)
    return calls, int(len(shared))


def pause_quantiles(tl: Timeline, gap_frame: pd.DataFrame, human_ms: Sequence[float] | None) -> np.ndarray:
    """(n, 4) quantiles in ms per timeline row: the gap's prediction columns for tool gaps, the
    human-wait distribution for human and idle pauses (NaN where neither is known)."""
    q = np.full((len(tl), 4), np.nan)
    rows = tl.gap_row
    tool = rows >= 0
    if all(c in gap_frame.columns for c in QUANTILE_COLUMNS):
        q[tool] = gap_frame[list(QUANTILE_COLUMNS)].to_numpy(dtype=np.float64)[rows[tool]]
    if human_ms is not None:
        human = tl.kind != "tool"
        q[human] = np.asarray(human_ms, dtype=np.float64)
    return q


def default_pools(tl: Timeline, fractions: Sequence[float] = DEFAULT_POOL_FRACTIONS,
                  block_tokens: int = BLOCK_TOKENS) -> list[int]:
    """Pool sizes as fractions of the peak demand (every context held at once): from pressure
    on nearly every pause to none, the range where policies can differ."""
    peak = tl.peak_demand_tokens()
    return sorted({max(block_tokens, int(round(peak * f / block_tokens)) * block_tokens) for f in fractions})


def replay_bundle(predictor, calls: pd.DataFrame, pools: Sequence[float] | None = None,
                  host_tokens: float = 0.0, concurrency: int = 16,
                  static_ttl_s: float = DEFAULT_STATIC_TTL_S,
                  max_active_s: float = MAX_ACTIVE_S, progress: bool = False) -> PoolResult:
    """The pool replay of a calls table with a model bundle: toollat from the Predictor's
    causal predictions (``predict_frame``), per_tool from the bundle's per-tool training
    distributions, both with the bundle's human-wait distribution and hint costs."""
    if tuple(predictor.levels) != LEVELS:
        raise ValueError(f"the pool replay needs a bundle predicting levels {LEVELS} (has {predictor.levels})")
    calls, shared = disambiguate_sessions(calls)
    predicted = predictor.predict_frame(calls, progress=progress)
    gaps = build_gaps(predicted, max_active_s=max_active_s)
    tl = Timeline.from_gaps(gaps.frame, concurrency, max_active_s)
    base = predictor.model.baselines_["per_tool_median"].predict(calls)
    per_tool = calls.copy()
    for c, col in zip(QUANTILE_COLUMNS, (10.0 ** base.quantiles * 1000.0).T):
        per_tool[c] = col
    pt_gaps = build_gaps(per_tool, max_active_s=max_active_s)
    if len(pt_gaps.frame) != len(gaps.frame) or not (pt_gaps.frame["start"].to_numpy() == gaps.frame["start"].to_numpy()).all():
        raise RuntimeError("per-tool and toollat gaps differ (internal error)")
    human = predictor.model.human_gaps_
    human_ms = human["ms"]["*"] if human else None
    costs = predictor.costs
    pols = [LRU(), StaticTTL(static_ttl_s),
            Predicted("per_tool", pause_quantiles(tl, pt_gaps.frame, human_ms), costs),
            Predicted("toollat", pause_quantiles(tl, gaps.frame, human_ms), costs), Belady()]
    pools = list(pools) if pools else default_pools(tl)
    data = gaps.report.to_dict()
    data.update(tl.report)
    data.update({"pauses": len(tl), "sessions_sharing_an_id": shared, "peak_demand_tokens": tl.peak_demand_tokens(),
                 "static_ttl_s": static_ttl_s, "block_tokens": BLOCK_TOKENS,
                 "human_wait_distribution": human_ms is not None})
    if pools and min(pools) < tl.tokens.max(initial=0):
        data["notes"] = list(data.get("notes", [])) + [
            f"pool {min(pools):,} tokens is smaller than the largest context ({tl.tokens.max():,.0f}): "
            "such requests never fit and count as re-prefilled (requests_larger_than_pool)"]
    return run_pools(tl, pols, pools, host_tokens, costs, data)


def plot_pools(result: PoolResult, path) -> None:
    """Hit rate against pool size, every policy on one plot (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, rows in result.policies.items():
        ax.plot([r["pool_tokens"] for r in rows], [r["hit_rate"] or 0 for r in rows], marker="o", label=name,
                linestyle="--" if name == "belady" else "-")
    ax.set_xscale("log")
    ax.set_xlabel("GPU KV pool (tokens)")
    ax.set_ylabel("token hit rate")
    h = result.headline
    ax.set_title(f"KV pool replay: gap closed vs LRU toollat {_fmt(h.get('gap_closed_vs_lru'))}, "
                 f"per_tool {_fmt(h.get('gap_closed_vs_lru_per_tool'))}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
