"""Engine-realistic KV replay: many sessions at once share a fixed GPU pool of KV blocks, and
optionally a host-memory tier behind it.

``simulation.simulator`` decides every gap alone with unlimited memory. Here, as in a serving
engine, paused requests compete for one pool of ``pool_tokens`` (blocks of ``BLOCK_TOKENS``),
and a policy chooses *which* paused KV to evict when the pool is full and, with a host tier,
*when* to load it back: every hint is a soft priority under memory pressure, never a pin.

**Timeline** (``Timeline.from_gaps``): the gaps of ``gaps.build_gaps`` (tool and human),
one stream per agent chain. A request pauses at a gap's start holding its context (the gap's
``tokens``, the logs' ``context_tokens``; where a session has none, the documented estimate of
``gaps``: stream, session, table median, then ``DEFAULT_CONTEXT_TOKENS``) and resumes at the
gap's end; between two gaps it is active and its KV is pinned. An active stretch longer than
``max_active_s`` is idle time the logs cannot see as a gap (``gaps`` docstring): the request
pauses after ``max_active_s`` and resumes at the next gap (kind ``idle``; it is predicted with
the human-wait distribution). Overlapping gaps of a stream are clipped to start at the previous
end. Two sessions with the same id in different sources are told apart by source (counted).

**Concurrency**: the logged sessions rarely overlap, so they are packed onto ``concurrency``
lanes: sessions in order of their first event (or, with ``order_seed``, in a random order: a
different session order for the spread), each placed on the lane that frees first, shifted in
time to start when that lane's previous session ended (all streams of a session move
together, so its own timeline is unchanged). About ``concurrency`` sessions are then live at
every moment while sessions last, each on its logged timeline (a few sessions of days keep a
long tail of the replay nearly idle). **Live KV** (``Timeline.live_kv_tokens``) is the context
held when a typical request pauses: the median, over pauses, of what every live stream holds
at that moment (its latest context, from its first pause to its last resume), a measure that
the idle tail does not dilute as a time average would; the default GPU pools are live KV /
``live_over_pool`` (``conf/pool``: live KV 1-2x the pool, where eviction-aware policies are
reported to differ most), the host tier ``host_ratio`` x the pool.

**Replay** (``replay``), events in time order (at equal times, each stream's own order):

- pause: the request's context becomes a paused entry, evictable; its growth since it resumed
  (fresh tokens) is allocated now.
- resume: GPU-resident blocks are hits; blocks in the host tier are loaded back (host hits,
  host traffic); the rest is re-prefilled. The request is active again (all its blocks pinned)
  until its next pause; after a stream's last pause it finishes and its KV is freed.
- when the pool is over capacity, blocks are evicted from the paused entry with the largest
  eviction key, from its tail (what is left is a prefix, so a partial entry still hits). If
  only active KV is left, the overflow is counted (``overcommitted_events``) and allowed.
- **write-back**: with a host tier (``host_tokens``; a policy with ``host=False``, ``lru``,
  ignores it), every GPU eviction is written to it (what it lacks of those blocks). **Admission
  rule**: the host tier takes the blocks into free room, or by evicting (from their tails) host
  copies whose key is larger than the written entry's; what still does not fit is refused
  (``host_refused_tokens``). So a copy is refused only when host memory is full of entries
  that rank before it: a ``drop``-hinted (demoted, lowest-priority) entry is refused exactly
  when host memory is under pressure, and never otherwise. A resumed entry's host copy is freed.
- **prefetch**: after a GPU eviction to host, and at the times it names, a policy's
  ``prefetch_at`` says when to load the entry's host part back (``pool_policies``). The load
  occupies GPU blocks from its start: they are taken from free room or by evicting paused
  entries that rank after the loaded entry (its ``loaded_key``) and that the policy expects
  back later (``expected``), never from active requests; a prefetch that finds no such room is
  denied, counted, and asked again at the policy's ``recheck_at``. The loaded blocks leave
  host memory (the tiers stay exclusive; the victims' write-back takes their room, so a
  prefetch pushes no copy out of host memory). The load runs at the host bandwidth, each load
  on its own (no queueing); a resume before it is done waits for the rest (a *late* prefetch:
  a partial stall); prefetched blocks evicted again before the resume, and loaded blocks
  waiting for it, are *wasted prefetch* (``prefetch_wasted_token_s``: GPU token-seconds from
  the prefetch's start to the eviction, or from the end of the load to the resume).

**Metrics** (``replay`` -> dict): ``hit_rate`` = tokens on the GPU and loaded when the request
resumes (prefetched ones included) / resumed context tokens; ``host_hit_rate`` = tokens served
from host memory at the resume (loaded then, or the rest of a late prefetch);
``gpu_host_hit_rate`` = their sum; ``reprefill_tokens``; ``prefill_amplification`` = (fresh +
re-prefilled) / fresh, fresh being every stream's first context and later growth;
``host_traffic_tokens`` (written + loaded, prefetches included); ``cost_tokens`` = re-prefilled
+ ``transfer_cost`` x host traffic (``transfer_cost`` per token moved one way, default
``offload_cost_s / (2 breakeven_s)`` of the hint costs: a round trip costs O where a re-prefill
costs B). With ``resume`` costs (``resume.ResumeCosts``): per resume the **stall** = (host
tokens still to load) / host bandwidth + re-prefilled tokens / prefill throughput, and
``stall_mean_s``, ``stall_p95_s`` (over every resume, zero stalls included),
``stall_total_s``; the prefetch counts (``prefetches``, ``prefetch_tokens``,
``prefetch_hit_tokens``, ``prefetch_late``, ``prefetch_denied``, ``prefetch_evicted_tokens``,
``prefetch_wasted_token_s``). Without ``resume`` nothing is prefetched and the stall is None.

**The study** (``run_pools``, ``replay_bundle``): every policy at every pool size; the
headline's ``stall_gap_closed`` = (stall of ``lru+host`` - stall of ``toollat``) / (stall of
``lru+host`` - stall of the oracle ``belady``), mean resume stalls at the middle pool, and
``stall_gap_closed_per_tool`` the same for ``per_tool``; ``gap_closed_vs_lru`` is the earlier
hit-rate reading (GPU hit rate, between ``lru`` and ``belady``).
"""
from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from toollat.hints import HintCosts
from toollat.core.units import prediction_columns

from .gaps import MAX_ACTIVE_S, build_gaps
from .pool_policies import DEMOTED, LRU, Belady, ContinuumTTL, Predicted, StaticTTL
from .resume import PoolConfig, ResumeCosts

__all__ = ["BLOCK_TOKENS", "DEFAULT_POOL_FRACTIONS", "LRU", "Belady", "ContinuumTTL", "PoolResult", "Predicted",
           "StaticTTL", "Timeline", "default_pools", "disambiguate_sessions", "gap_closed", "live_pools",
           "pause_quantiles", "plot_pools", "replay", "replay_bundle", "run_pools", "stall_gap_closed"]

BLOCK_TOKENS = 16
DEFAULT_POOL_FRACTIONS: tuple[float, ...] = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0)  # of the peak demand


# -- the timeline -------------------------------------------------------------------------------
@dataclass
class Timeline:
    """One row per pause, grouped by stream and in time order within a stream: ``stream``
    (int), ``start`` and ``end`` (seconds), ``tokens`` (context held), ``kind`` (tool, human,
    idle), ``gap_row`` (the row in the gaps frame, -1 for idle pauses), ``session``, ``tool``
    (the gap's tool: its parallel group's longest call; ``(human)`` or ``(idle)`` otherwise)."""

    stream: np.ndarray
    start: np.ndarray
    end: np.ndarray
    tokens: np.ndarray
    kind: np.ndarray
    gap_row: np.ndarray
    session: np.ndarray
    report: dict[str, Any] = field(default_factory=dict)
    tool: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.stream)
        if self.tool is None:
            self.tool = np.array(["?"] * n, dtype=object)
        for name in ("start", "end", "tokens", "kind", "gap_row", "session", "tool"):
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
    def of(cls, rows: Sequence[tuple], kind: str = "tool") -> "Timeline":
        """From ``(stream, start_s, end_s, tokens[, tool])`` rows (tests, hand-made timelines)."""
        rows = sorted(rows, key=lambda r: (str(r[0]), r[1]))
        names = {s: i for i, s in enumerate(dict.fromkeys(str(r[0]) for r in rows))}
        return cls(np.array([names[str(r[0])] for r in rows], dtype=np.int64), np.array([r[1] for r in rows]),
                   np.array([r[2] for r in rows]), np.array([r[3] for r in rows]),
                   np.array([kind] * len(rows), dtype=object), np.full(len(rows), -1, dtype=np.int64),
                   np.array([str(r[0]) for r in rows], dtype=object),
                   tool=np.array([str(r[4]) if len(r) > 4 else "?" for r in rows], dtype=object))

    @classmethod
    def from_gaps(cls, frame: pd.DataFrame, concurrency: int | None = None,
                  max_active_s: float = MAX_ACTIVE_S, order_seed: int | None = None) -> "Timeline":
        """From a ``gaps.build_gaps`` frame (module docstring: idle pauses, clipping, lanes)."""
        rep: dict[str, Any] = {"overlapping_gaps_clipped": 0, "idle_pauses": 0}
        f = frame.reset_index(drop=True)
        origin = f["start"].min() if len(f) else pd.Timestamp(0, tz="UTC")
        start = ((f["start"] - origin).dt.total_seconds()).to_numpy(dtype=np.float64)
        end = ((f["end"] - origin).dt.total_seconds()).to_numpy(dtype=np.float64)
        codes, _ = pd.factorize(f["stream"])
        streams, starts, ends, toks, kinds, rows, sessions, tools = [], [], [], [], [], [], [], []
        session = f["session_id"].astype(str).to_numpy()
        kind = f["kind"].astype(str).to_numpy()
        tool_name = f["tool_name"].astype(str).to_numpy() if "tool_name" in f.columns else np.array(["?"] * len(f))
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
                    tools.append("(idle)")
                    rep["idle_pauses"] += 1
            streams.append(s); starts.append(a); ends.append(b); toks.append(tokens[i])
            kinds.append(kind[i]); rows.append(i); sessions.append(session[i]); tools.append(tool_name[i])
            prev_stream, prev_end = s, b
        tl = cls(np.array(streams, dtype=np.int64), np.array(starts), np.array(ends), np.array(toks),
                 np.array(kinds, dtype=object), np.array(rows, dtype=np.int64), np.array(sessions, dtype=object), rep,
                 np.array(tools, dtype=object))
        if concurrency is not None:
            tl.pack(concurrency, order_seed)
        return tl

    def pack(self, concurrency: int, order_seed: int | None = None) -> None:
        """Shift sessions onto ``concurrency`` lanes (module docstring), in order of their first
        event, or in a random order drawn with ``order_seed``."""
        if concurrency < 1:
            raise ValueError("concurrency must be >= 1")
        if not len(self):
            return
        df = pd.DataFrame({"session": self.session, "start": self.start, "end": self.end})
        span = df.groupby("session", sort=False).agg(first=("start", "min"), last=("end", "max"))
        span = span.sort_values("first", kind="stable")
        if order_seed is not None:
            span = span.iloc[np.random.default_rng(order_seed).permutation(len(span))]
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
        self.report["session_order"] = "first event" if order_seed is None else f"random, seed {order_seed}"
        self.report["span_s"] = float(self.end.max() - self.start.min())

    def _demand(self) -> tuple[np.ndarray, np.ndarray]:
        """The context all streams hold if nothing is ever evicted, as a step function: the
        times it changes and its value from each (a stream holds its latest context from its
        first pause to its last resume)."""
        last_end = pd.Series(self.end).groupby(self.stream).max().to_dict()
        ev = sorted([(float(self.start[i]), 0, i) for i in range(len(self))]
                    + [(float(e), 1, int(s)) for s, e in last_end.items()])
        held: dict[int, float] = {}
        total = 0.0
        times, values = [], []
        for t, kind, x in ev:
            if kind == 0:
                s = int(self.stream[x])
                total += self.tokens[x] - held.get(s, 0.0)
                held[s] = float(self.tokens[x])
            else:
                total -= held.pop(x, 0.0)
            times.append(t)
            values.append(total)
        return np.asarray(times), np.asarray(values)

    def peak_demand_tokens(self) -> float:
        """The most context all streams hold at once if nothing is ever evicted."""
        if not len(self):
            return 0.0
        return float(self._demand()[1].max())

    def live_kv_tokens(self) -> float:
        """Live KV: the median, over pauses, of the demand when the request pauses (module docstring)."""
        if not len(self):
            return 0.0
        t, v = self._demand()
        return float(np.median(v[np.searchsorted(t, self.start, side="right") - 1]))


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

    def peek_max(self) -> int | None:
        while self.heap:
            _, v, i = self.heap[0]
            if self.version.get(i) == v:
                return i
            heapq.heappop(self.heap)
        return None

    def pop_max(self) -> int | None:
        i = self.peek_max()
        if i is not None:
            heapq.heappop(self.heap)
            self.version.pop(i)
        return i


def _blocks(tokens: float, block: int) -> int:
    return int(math.ceil(tokens / block)) if tokens > 0 else 0


def replay(tl: Timeline, policy, pool_tokens: float, host_tokens: float = 0.0, *,
           block_tokens: int = BLOCK_TOKENS, transfer_cost: float | None = None,
           costs: HintCosts = HintCosts(), resume: ResumeCosts | None = None) -> dict[str, Any]:
    """Replay the timeline under one policy and pool size (module docstring)."""
    if not pool_tokens > 0:
        raise ValueError("pool_tokens must be > 0")
    if host_tokens < 0:
        raise ValueError("host_tokens must be >= 0")
    if transfer_cost is None:
        transfer_cost = costs.offload_cost_s / (2.0 * costs.breakeven_s)
    n = len(tl)
    bt = block_tokens
    cap = int(pool_tokens // bt)
    use_host = host_tokens > 0 and getattr(policy, "host", True)
    gpu, host = _Tier(cap), _Tier(int(host_tokens // bt) if use_host else 0)
    htps = resume.host_tokens_per_s if resume is not None else math.inf
    prefetching = resume is not None and host.capacity > 0
    nblk = np.array([_blocks(x, bt) for x in tl.tokens], dtype=np.int64)
    start_t, tokens = tl.start, tl.tokens
    g = np.zeros(n, dtype=np.int64)        # GPU-resident blocks of a paused entry (a prefix)
    h_lo = np.zeros(n, dtype=np.int64)     # host segment [h_lo, h_hi)
    h_hi = np.zeros(n, dtype=np.int64)
    pf = np.zeros(n, dtype=np.int64)       # of g, the blocks prefetched (its tail)
    pf_start = np.zeros(n)
    pf_done = np.zeros(n)                  # when the prefetch's load ends
    pf_ver = np.zeros(n, dtype=np.int64)   # cancels stale prefetch checks
    paused = np.zeros(n, dtype=bool)
    key_of: dict[int, tuple] = {}          # eviction key in GPU memory
    hkey_of: dict[int, tuple] = {}         # and in host memory
    changes: list = []                      # (time, entry): an entry's key may change
    checks: list = []                       # (time, seq, entry, version): prefetch checks
    active: dict[int, int] = {}             # stream -> pinned blocks of its active request
    stalls: list[float] = []
    stall_kind: dict[str, float] = {}       # kind of pause -> total stall
    st = {"gpu_hit": 0.0, "host_hit": 0.0, "reprefill": 0.0, "resumed": 0.0, "fresh": 0.0,
          "host_write": 0.0, "host_read": 0.0, "overcommitted_events": 0, "evictions": 0,
          "requests_larger_than_pool": int((nblk > cap).sum()), "host_refused": 0,
          "prefetches": 0, "prefetch_blocks": 0, "prefetch_hit": 0.0, "prefetch_late": 0, "prefetch_denied": 0,
          "prefetch_evicted": 0, "prefetch_wasted": 0.0}
    seq = [0]
    def on_host(i: int) -> bool:
        return bool(h_hi[i] > g[i] >= h_lo[i])

    begin = getattr(policy, "begin", None)
    if begin is not None:
        begin(tl)

    def refresh(i: int, t: float) -> None:
        key, nxt = policy.key(i, float(start_t[i]), t, tl)
        key_of[i] = key
        hkey_of[i] = policy.host_key(i, key, tl)
        if g[i] > 0:
            gpu.push(i, key)
        if h_hi[i] > h_lo[i]:
            host.push(i, hkey_of[i])
        if nxt < math.inf:
            heapq.heappush(changes, (nxt, i))

    def advance(t: float) -> None:
        while changes and changes[0][0] <= t:
            _, i = heapq.heappop(changes)
            if paused[i]:
                refresh(i, t)

    def host_admit(j: int, lo: int, hi: int) -> None:
        """Write GPU blocks [lo, hi) of entry j to the host tier (admission rule)."""
        if host.capacity <= 0 or hi <= lo:
            return
        ol, oh = int(h_lo[j]), int(h_hi[j])
        merge = oh > ol and ol <= hi and oh >= lo            # overlaps or touches
        new_lo, new_hi = (min(lo, ol), max(hi, oh)) if merge else (lo, hi)
        want = new_hi - new_lo
        host.remove(j)
        host.used -= oh - ol                                   # its own copy is part of the new one (or useless)
        h_lo[j] = h_hi[j] = 0
        kj = hkey_of[j]
        while host.used + want > host.capacity:
            v = host.peek_max()
            if v is None or not hkey_of[v] > kj:
                break
            host.pop_max()
            k = min(int(h_hi[v] - h_lo[v]), host.used + want - host.capacity)
            h_hi[v] -= k
            host.used -= k
            if h_hi[v] > h_lo[v]:
                host.push(v, hkey_of[v])
        m = max(0, min(want, host.capacity - host.used))
        st["host_refused"] += want - m
        if m <= 0:
            return
        h_lo[j], h_hi[j] = new_lo, new_lo + m
        host.used += m
        kept_old = max(0, min(new_lo + m, oh) - max(new_lo, ol)) if merge else 0
        st["host_write"] += m - kept_old
        host.push(j, kj)

    def schedule(j: int, t: float, at: float | None = None) -> None:
        """Ask the policy when to load entry j's host part back; queue a check then."""
        if not prefetching or not (h_hi[j] > g[j] >= h_lo[j]):
            return
        if at is None:
            need = int(h_hi[j] - g[j])
            at = policy.prefetch_at(j, t, need * bt / htps, victim_s(t, need, j), tl)
        if at < math.inf:
            pf_ver[j] += 1
            seq[0] += 1
            heapq.heappush(checks, (max(at, t), seq[0], j, int(pf_ver[j])))

    def victim_s(t: float, need: int, j: int) -> float:
        """How long the entry a prefetch of ``need`` blocks would evict is expected to stay paused."""
        if gpu.capacity - gpu.used >= need:
            return math.inf
        v = gpu.peek_max()
        if v is None or v == j:
            return math.inf
        expected = policy.expected(v, t, tl)
        if expected == math.inf:           # past its whole predicted support: it waits about as long again
            return max(t - float(start_t[v]), 0.0)
        return max(expected - t, 0.0)

    def evict(j: int, want: int, t: float) -> None:
        """Evict up to ``want`` blocks of paused entry j (popped from the GPU heap) from its tail."""
        k = min(int(g[j]), want)
        lo, hi = int(g[j] - k), int(g[j])
        g[j] = lo
        gpu.used -= k
        st["evictions"] += 1
        if pf[j] > 0:
            kp = min(k, int(pf[j]))
            pf[j] -= kp
            st["prefetch_evicted"] += kp
            st["prefetch_wasted"] += kp * bt * (t - pf_start[j])
        host_admit(j, lo, hi)
        if g[j] > 0:
            gpu.push(j, key_of[j])
        schedule(j, t)

    def make_room(t: float) -> None:
        while gpu.used > gpu.capacity:
            j = gpu.pop_max()
            if j is None:
                st["overcommitted_events"] += 1
                return
            evict(j, gpu.used - gpu.capacity, t)

    def check(j: int, t: float, version: int) -> None:
        """A prefetch check: start loading entry j's host part back if the policy says now and
        room is granted (module docstring)."""
        if version != pf_ver[j] or not paused[j] or not (h_hi[j] > g[j] >= h_lo[j]):
            return
        advance(t)
        need = int(h_hi[j] - g[j])
        at = policy.prefetch_at(j, t, need * bt / htps, victim_s(t, need, j), tl)
        if at > t:
            schedule(j, t, at)
            return
        kj = policy.loaded_key(j, t, tl)   # its key once loaded
        ej = policy.expected(j, t, tl)
        host.capacity += need               # the loaded blocks leave host memory: room for the victims
        while gpu.capacity - gpu.used < need:
            v = gpu.peek_max()
            if v is None or v == j or not (key_of[v] > kj and policy.expected(v, t, tl) > ej):
                break
            gpu.pop_max()
            evict(v, need - (gpu.capacity - gpu.used), t)
        got = min(need, gpu.capacity - gpu.used)
        if got > 0:
            start_load(j, got, t)
        host.capacity -= need
        if got <= 0:
            st["prefetch_denied"] += 1
            schedule(j, t, policy.recheck_at(j, t, tl))

    def start_load(j: int, got: int, t: float) -> None:
        """Move blocks [g, g + got) of entry j from host to GPU memory (the tiers stay exclusive)."""
        policy.on_load(j, t)
        new_g = int(g[j]) + got
        host.used -= min(new_g, int(h_hi[j])) - int(h_lo[j])
        if h_hi[j] > new_g:
            h_lo[j] = new_g
        else:
            h_lo[j] = h_hi[j] = 0
            host.remove(j)
        if pf[j] == 0:
            pf_start[j] = t
        pf_done[j] = max(pf_done[j] if pf[j] else t, t) + got * bt / htps
        g[j] += got
        pf[j] += got
        gpu.used += got
        st["prefetches"] += 1
        st["prefetch_blocks"] += got
        st["host_read"] += got
        gpu.remove(j)
        refresh(j, t)

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
        while checks and checks[0][0] < t:   # prefetch checks due before this event
            at, _, j, version = heapq.heappop(checks)
            check(j, at, version)
        s = int(tl.stream[i])
        advance(t)
        if kind == 1:
            before = active.pop(s, None)
            # fresh prefill: a stream's first context, then its growth
            st["fresh"] += max(float(tokens[i]) - last_tokens.get(s, 0.0), 0.0)
            last_tokens[s] = float(tokens[i])
            gpu.used += int(nblk[i]) - (before or 0)
            g[i] = nblk[i]
            paused[i] = True
            policy.on_pause(i, t)
            refresh(i, t)
            make_room(t)
        else:
            paused[i] = False
            pf_ver[i] += 1
            gpu.remove(i)
            host.remove(i)
            need = int(nblk[i])
            hit = int(g[i])
            hh = int(max(0, h_hi[i] - hit)) if (h_hi[i] > h_lo[i] and h_lo[i] <= hit) else 0
            hh = min(hh, need - hit)
            tok = float(tokens[i])
            g_tok = min(hit * bt, tok)
            pending = 0.0                   # prefetched tokens not loaded yet
            if pf[i] > 0:
                pf_tok = g_tok - min((hit - int(pf[i])) * bt, tok)
                pending = min(pf_tok, max(0.0, pf_done[i] - t) * htps)
                st["prefetch_hit"] += pf_tok - pending
                st["prefetch_wasted"] += pf_tok * max(0.0, t - pf_done[i])
                st["prefetch_late"] += int(pending > 0)
            host_tok = min((hit + hh) * bt, tok) - g_tok
            reprefill = tok - g_tok - host_tok
            st["gpu_hit"] += g_tok - pending
            st["host_hit"] += host_tok + pending
            st["host_read"] += hh
            st["reprefill"] += reprefill
            st["resumed"] += tok
            if resume is not None:
                stalls.append(resume.stall_s(host_tok + pending, reprefill))
                stall_kind[str(tl.kind[i])] = stall_kind.get(str(tl.kind[i]), 0.0) + stalls[-1]
            host.used -= int(h_hi[i] - h_lo[i])
            h_lo[i] = h_hi[i] = 0
            g[i] = 0
            pf[i] = 0
            policy.on_resume(i, t)
            if is_last[i]:       # the stream's last request: it finishes, its KV is freed
                gpu.used -= hit
            else:
                gpu.used += need - hit
                active[s] = need
                make_room(t)
    resumed = st["resumed"]
    traffic = (st["host_write"] + st["host_read"]) * bt
    stall = np.asarray(stalls, dtype=np.float64)
    out = {
        "hit_rate": st["gpu_hit"] / resumed if resumed else None,
        "host_hit_rate": st["host_hit"] / resumed if resumed else None,
        "gpu_host_hit_rate": (st["gpu_hit"] + st["host_hit"]) / resumed if resumed else None,
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
        "host_refused_tokens": st["host_refused"] * bt,
        "stall_mean_s": float(stall.mean()) if len(stall) else None,
        "stall_p95_s": float(np.percentile(stall, 95)) if len(stall) else None,
        "stall_total_s": float(stall.sum()) if len(stall) else None,
        "stall_total_s_by_kind": stall_kind if resume is not None else None,
        "prefetches": st["prefetches"],
        "prefetch_tokens": st["prefetch_blocks"] * bt,
        "prefetch_hit_tokens": st["prefetch_hit"],
        "prefetch_late": st["prefetch_late"],
        "prefetch_denied": st["prefetch_denied"],
        "prefetch_evicted_tokens": st["prefetch_evicted"] * bt,
        "prefetch_wasted_token_s": st["prefetch_wasted"],
    }
    return out


# -- the study: every policy at every pool size ----------------------------------------------------
@dataclass
class PoolResult:
    pools: list[int]
    host_tokens: list[int]                      # the host tier at each pool size (0: none)
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


def stall_gap_closed(policies: dict[str, list[dict[str, Any]]], name: str, at: int) -> float | None:
    """(stall of lru+host - stall of ``name``) / (stall of lru+host - stall of the oracle), mean
    resume stalls at pool index ``at``; None where the oracle is not below lru+host."""
    base, orc, x = (policies[k][at].get("stall_mean_s") for k in ("lru+host", "belady", name))
    if None in (base, orc, x) or not base - orc > 0:
        return None
    return float((base - x) / (base - orc))


def run_pools(tl: Timeline, policies: Sequence, pools: Sequence[float], host_tokens: float | Sequence[float] = 0.0,
              costs: HintCosts = HintCosts(), data: dict[str, Any] | None = None,
              resume: ResumeCosts | None = None, progress: bool = False) -> PoolResult:
    """Every policy at every pool size (``host_tokens``: one host tier for all, or one per
    pool), and the headline (module docstring)."""
    hosts = [float(h) for h in host_tokens] if isinstance(host_tokens, Sequence) else [float(host_tokens)] * len(pools)
    if len(hosts) != len(pools):
        raise ValueError(f"{len(hosts)} host tiers for {len(pools)} pools")
    from toollat.progress import progress_bar

    jobs = [(p, n, h) for p in policies for n, h in zip(pools, hosts)]
    out: dict[str, list[dict[str, Any]]] = {p.name: [] for p in policies}
    with progress_bar(progress) as bar:
        task = bar.add_task("replaying the pool", total=len(jobs))
        for p, n, h in jobs:
            out[p.name].append(dict(pool_tokens=int(n), host_tokens=int(h) if getattr(p, "host", True) else 0,
                                    **replay(tl, p, n, h, costs=costs, resume=resume)))
            bar.advance(task)
    pools = [int(n) for n in pools]
    head: dict[str, Any] = {"pools": pools}
    if "lru" in out and "belady" in out:
        head["gap_closed_vs_lru"] = gap_closed(out, "toollat") if "toollat" in out else None
        head["gap_closed_vs_lru_per_tool"] = gap_closed(out, "per_tool") if "per_tool" in out else None
        head["pools_where_belady_beats_lru"] = [n for n, l, b in zip(pools, out["lru"], out["belady"])
                                                if l["hit_rate"] is not None and b["hit_rate"] - l["hit_rate"] >= 0.02]
    if "toollat" in out and "per_tool" in out:
        head["toollat_at_or_above_per_tool_everywhere"] = all(
            (a["hit_rate"] or 0) >= (b["hit_rate"] or 0) - 1e-12 for a, b in zip(out["toollat"], out["per_tool"]))
    mid = len(pools) // 2
    if resume is not None and pools and "lru+host" in out and "belady" in out:
        head["middle_pool"] = pools[mid]
        head["stall_mean_s_middle"] = {name: rows[mid]["stall_mean_s"] for name, rows in out.items()}
        head["stall_gap_closed"] = stall_gap_closed(out, "toollat", mid) if "toollat" in out else None
        head["stall_gap_closed_per_tool"] = stall_gap_closed(out, "per_tool", mid) if "per_tool" in out else None
        for name in ("toollat", "per_tool"):
            if name in out:
                head[f"{name}_gpu_host_hit_at_or_above_lru_host_everywhere"] = all(
                    (a["gpu_host_hit_rate"] or 0) >= (b["gpu_host_hit_rate"] or 0) - 1e-12
                    for a, b in zip(out[name], out["lru+host"]))
    for name, rows in out.items():
        head[f"hit_rate_{name}"] = [r["hit_rate"] for r in rows]
        if any(h > 0 for h in hosts):
            head[f"gpu_host_hit_rate_{name}"] = [r["gpu_host_hit_rate"] for r in rows]
        if resume is not None:
            head[f"stall_mean_s_{name}"] = [r["stall_mean_s"] for r in rows]
    return PoolResult(pools, [int(h) for h in hosts], out, dict(data or {}), head)


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


def pause_quantiles(tl: Timeline, gap_frame: pd.DataFrame, human_ms: Sequence[float] | None,
                    levels: Sequence[float]) -> np.ndarray:
    """(n, levels) quantiles in ms per timeline row: the gap's prediction columns at ``levels``
    for tool gaps, the human-wait distribution (at the same levels) for human and idle pauses
    (NaN where neither is known)."""
    cols = prediction_columns(levels)
    q = np.full((len(tl), len(cols)), np.nan)
    rows = tl.gap_row
    tool = rows >= 0
    if all(c in gap_frame.columns for c in cols):
        q[tool] = gap_frame[cols].to_numpy(dtype=np.float64)[rows[tool]]
    if human_ms is not None:
        if len(human_ms) != len(cols):
            raise ValueError(f"human-wait quantiles have {len(human_ms)} values for levels {list(levels)}")
        human = tl.kind != "tool"
        q[human] = np.asarray(human_ms, dtype=np.float64)
    return q


def default_pools(tl: Timeline, fractions: Sequence[float] = DEFAULT_POOL_FRACTIONS,
                  block_tokens: int = BLOCK_TOKENS) -> list[int]:
    """Pool sizes as fractions of the peak demand (every context held at once): from pressure
    on nearly every pause to none."""
    peak = tl.peak_demand_tokens()
    return sorted({max(block_tokens, int(round(peak * f / block_tokens)) * block_tokens) for f in fractions})


def live_pools(tl: Timeline, live_over_pool: Sequence[float], block_tokens: int = BLOCK_TOKENS) -> list[int]:
    """Pool sizes at which the live KV (``Timeline.live_kv_tokens``) is ``live_over_pool`` times
    the pool, in whole blocks, smallest first."""
    live = tl.live_kv_tokens()
    return sorted({max(block_tokens, int(round(live / r / block_tokens)) * block_tokens) for r in live_over_pool})


def replay_bundle(predictor, calls: pd.DataFrame, config: PoolConfig, pools: Sequence[float] | None = None,
                  host_tokens: float | None = None, order_seed: int | None = None,
                  pool_fractions: Sequence[float] | None = None, analysis: bool = False,
                  max_active_s: float = MAX_ACTIVE_S, progress: bool = False) -> PoolResult:
    """The pool replay of a calls table with a model bundle: toollat from the Predictor's
    causal predictions (``predict_frame``), per_tool from the bundle's per-tool training
    distributions, both at the model's quantile levels with the bundle's human-wait
    distribution and hint costs. ``config``: ``conf/pool`` (concurrency, resume costs, default
    pools ``live_over_pool`` and host tier ``host_ratio`` x pool); ``pools`` and
    ``host_tokens`` (one host tier for every pool) replace its defaults; ``pool_fractions``
    gives the pools as fractions of the peak demand instead (``default_pools``). ``analysis``
    adds two rows that are not policies an engine could run: ``toollat_priority`` (toollat's
    predictions in the priority order instead of recency) and ``exact_tools`` (every tool gap
    known to within 0.1%, human and idle waits by the bundle's distribution: what a perfect
    per-call tool predictor could reach under the same rules)."""
    levels = tuple(predictor.levels)
    calls, shared = disambiguate_sessions(calls)
    predicted = predictor.predict_frame(calls, progress=progress)
    gaps = build_gaps(predicted, max_active_s=max_active_s)
    tl = Timeline.from_gaps(gaps.frame, config.concurrency, max_active_s, order_seed)
    base = predictor.model.baselines_["per_tool_median"].predict(calls)
    if tuple(base.levels) != levels:
        raise ValueError(f"the bundle's per-tool baseline predicts levels {list(base.levels)}, its model {list(levels)}")
    per_tool = calls.copy()
    for c, col in zip(prediction_columns(levels), (10.0 ** base.quantiles * 1000.0).T):
        per_tool[c] = col
    pt_gaps = build_gaps(per_tool, max_active_s=max_active_s)
    if len(pt_gaps.frame) != len(gaps.frame) or not (pt_gaps.frame["start"].to_numpy() == gaps.frame["start"].to_numpy()).all():
        raise RuntimeError("per-tool and toollat gaps differ (internal error)")
    human = predictor.model.human_gaps_
    human_ms = human["ms"]["*"] if human else None
    costs = predictor.costs
    if pools:
        pools = sorted(int(p) for p in pools)
    elif pool_fractions:
        pools = default_pools(tl, pool_fractions)
    else:
        pools = live_pools(tl, config.live_over_pool)
    hosts = [float(host_tokens)] * len(pools) if host_tokens is not None else [config.host_ratio * n for n in pools]
    with_host = any(h > 0 for h in hosts)
    q_toollat = pause_quantiles(tl, gaps.frame, human_ms, levels)
    pols = [LRU()] + ([LRU(host=True)] if with_host else []) + [
        StaticTTL(config.static_ttl_s), ContinuumTTL(),
        Predicted("per_tool", pause_quantiles(tl, pt_gaps.frame, human_ms, levels), costs, levels, order="recency"),
        Predicted("toollat", q_toollat, costs, levels, order="recency")]
    if analysis:
        gap_ms = (tl.end - tl.start)[:, None] * 1000.0 * np.linspace(0.999, 1.001, len(levels))[None, :]
        exact = np.where((tl.kind == "tool")[:, None], gap_ms, q_toollat)
        pols += [Predicted("toollat_priority", q_toollat, costs, levels, order="priority"),
                 Predicted("exact_tools", exact, costs, levels, order="recency")]
    pols.append(Belady())
    data = gaps.report.to_dict()
    data.update(tl.report)
    data.update({"pauses": len(tl), "sessions_sharing_an_id": shared, "peak_demand_tokens": tl.peak_demand_tokens(),
                 "live_kv_tokens": tl.live_kv_tokens(), "levels": list(levels), "block_tokens": BLOCK_TOKENS,
                 "human_wait_distribution": human_ms is not None, "config": config.to_dict(),
                 "host_tier": "none" if not with_host else (f"{host_tokens:,.0f} tokens at every pool" if host_tokens is not None
                                                          else f"{config.host_ratio:g} x the GPU pool")})
    if pools and min(pools) < tl.tokens.max(initial=0):
        data["notes"] = list(data.get("notes", [])) + [
            f"pool {min(pools):,} tokens is smaller than the largest context ({tl.tokens.max():,.0f}): "
            "such requests never fit and count as re-prefilled (requests_larger_than_pool)"]
    return run_pools(tl, pols, pools, hosts, costs, data, config.resume, progress)


_STYLE = {"lru": ("tab:gray", "-"), "lru+host": ("black", "-"), "static_ttl": ("tab:brown", ":"),
          "continuum_ttl": ("tab:orange", "-."), "per_tool": ("tab:purple", "-."), "toollat": ("tab:green", "-"),
          "toollat_priority": ("tab:olive", ":"), "exact_tools": ("tab:red", ":"), "belady": ("tab:blue", "--")}


def plot_pools(result: PoolResult, path) -> None:
    """GPU hit rate against pool size and, with resume costs, the mean resume stall against
    pool size: every policy on one figure (PNG)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows0 = next(iter(result.policies.values()), [])
    has_stall = bool(rows0) and rows0[0].get("stall_mean_s") is not None
    fig = Figure(figsize=(12 if has_stall else 7, 4.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 2 if has_stall else 1, 1)
    for name, rows in result.policies.items():
        color, ls = _STYLE.get(name, (None, "-"))
        ax.plot([r["pool_tokens"] for r in rows], [r["hit_rate"] or 0 for r in rows], marker="o", ms=4,
                color=color, linestyle=ls, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("GPU KV pool (tokens)")
    ax.set_ylabel("GPU token hit rate")
    both = [r["gpu_host_hit_rate"] for rows in result.policies.values() for r in rows
            if r.get("host_tokens") and r["gpu_host_hit_rate"] is not None]
    h = result.headline
    ax.set_title("GPU hit rate" + (f"; GPU+host hit rate {min(both):.4f} .. {max(both):.4f} with a host tier"
                                   if both else f"; gap closed vs LRU: toollat {_fmt(h.get('gap_closed_vs_lru'))}, "
                                                f"per_tool {_fmt(h.get('gap_closed_vs_lru_per_tool'))}"), fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if has_stall:
        ax2 = fig.add_subplot(1, 2, 2)
        for name, rows in result.policies.items():
            color, ls = _STYLE.get(name, (None, "-"))
            ax2.plot([r["pool_tokens"] for r in rows], [max(r["stall_mean_s"] or 0.0, 1e-6) for r in rows],
                     marker="o", ms=4, color=color, linestyle=ls, label=name)
        ax2.set_xscale("log")
        ax2.set_yscale("log")
        ax2.set_xlabel("GPU KV pool (tokens)")
        ax2.set_ylabel("mean resume stall (s; 0 drawn at 1e-6)")
        title = "mean resume stall"
        if "stall_gap_closed" in h:
            title += (f"; gap closed at the middle pool: toollat {_fmt(h.get('stall_gap_closed'))}, "
                      f"per_tool {_fmt(h.get('stall_gap_closed_per_tool'))}")
        ax2.set_title(title, fontsize=9)
        ax2.grid(alpha=0.3, which="both")
        ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(str(path), format="png")


def _fmt(x) -> str:
    return "n/a" if x is None else f"{x:.2f}"
