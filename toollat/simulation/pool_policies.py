"""The shared-pool replay's policies: which paused KV to evict, and when to load it back.

``pool.replay`` asks a policy (``LRU`` is the base every policy extends; each method has a
default there):

- ``key(i, pause, t, tl) -> (key, next_change)``: the eviction key of paused entry ``i`` at
  time ``t`` in GPU memory (larger is evicted first; its first element is its class: 0, or
  ``DEMOTED`` = 1, evicted before every class-0 entry) and when it next changes;
  ``host_key(i, key, tl)``: the same in host memory (the GPU key by default).
- ``host``: whether it uses a host tier when there is one (``lru`` does not: GPU only).
- ``prefetch_at(i, t, load_s, victim_s, tl) -> time``: for an entry with KV in host memory,
  when to start loading it back (<= t: now; ``inf``: never; the replay asks again at a later
  time it names). ``load_s`` is the time its host part takes to load, ``victim_s`` how long
  the entry a prefetch would evict is expected to stay paused (``inf``: free room).
  ``expected(i, t, tl)`` (when it expects entry i back), ``loaded_key(i, t, tl)`` (its key once
  loaded) and ``recheck_at(i, t, tl)`` (when to ask again after a denial) serve the grant
  (``pool`` docstring); ``on_load(i, t)`` says a load started.
- ``begin(tl)``, ``on_pause(i, t)``, ``on_resume(i, t)``: what a policy learns as the replay
  runs (causal; ``begin`` starts each replay afresh).

Policies:

- ``lru``: the least recently paused first (vLLM's and SGLang's default), GPU only.
- ``lru+host`` (``LRU(host=True)``): the same order, every GPU eviction written to host memory
  (write-back) and loaded on resume: the default of host-tier engines (vLLM with LMCache
  offload, SGLang HiCache, Mooncake). No prefetch.
- ``static_ttl`` T: protected for T after the pause, then LRU (soft pin).
- ``continuum_ttl``: a Continuum-style pin (Li et al. 2025, arXiv:2511.02230, simplified): a
  tool gap is protected for the running mean of the gaps of its tool seen so far in the replay
  (causal: a gap is seen when it ends; a tool not seen yet gets the running mean of all tool
  gaps, none at the start: no pin), then LRU; human and idle waits are not pinned. Continuum
  derives its TTL from the tool's duration distribution and reload cost; a mean is its core.
- ``belady``: the furthest true resume first; with a host tier, the oracle: it also loads each
  entry back from host memory at its true resume minus the load time.
- ``per_tool`` and ``toollat`` (``Predicted``): predicted quantiles on the tiers: the hint
  as classes, the engine's recency order (or the priority rule) within a class, and the
  prefetch rule (``Predicted`` docstring).
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from toollat.hints import HintCosts, decide_plans
from toollat.core.units import LEVELS

DEMOTED = 1   # key class of demoted entries (evicted before every class-0 entry)


class LRU:
    """The least recently paused first; with ``host=True`` (``lru+host``) it writes every GPU
    eviction to host memory when the pool has a host tier."""

    def __init__(self, host: bool = False, name: str | None = None) -> None:
        self.host = bool(host)
        self.name = name or ("lru+host" if host else "lru")

    def key(self, i: int, pause: float, t: float, tl) -> tuple[tuple, float]:
        return (0, -pause), math.inf

    def prefetch_at(self, i: int, t: float, load_s: float, victim_s: float, tl) -> float:
        return math.inf

    def host_key(self, i: int, key: tuple, tl) -> tuple:
        """The entry's eviction key in host memory (the same as in GPU memory by default)."""
        return key

    def expected(self, i: int, t: float, tl) -> float:
        """When the policy expects paused entry i to resume (absolute; ``inf``: no idea). A
        prefetch may only evict entries expected later than the one it loads."""
        return math.inf

    def loaded_key(self, i: int, t: float, tl) -> tuple:
        """Entry i's eviction key once a prefetch loads it at t (a prefetch may only evict
        entries that rank after that)."""
        return self.key(i, float(tl.start[i]), t, tl)[0]

    def on_load(self, i: int, t: float) -> None:
        """A prefetch of entry i starts at t."""
        return None

    def recheck_at(self, i: int, t: float, tl) -> float:
        """When to ask ``prefetch_at`` again after a prefetch was denied (``inf``: never)."""
        return math.inf

    def begin(self, tl) -> None:
        """A replay starts (policies that learn forget what they learned)."""
        return None

    def on_pause(self, i: int, t: float) -> None:
        return None

    def on_resume(self, i: int, t: float) -> None:
        return None


class StaticTTL(LRU):
    def __init__(self, ttl_s: float, host: bool = True) -> None:
        if not ttl_s >= 0:
            raise ValueError("a static TTL is >= 0 seconds")
        super().__init__(host, "static_ttl")
        self.ttl_s = float(ttl_s)

    def key(self, i, pause, t, tl):
        if t < pause + self.ttl_s:
            return (0, -pause), pause + self.ttl_s
        return (DEMOTED, -pause), math.inf


class ContinuumTTL(LRU):
    """A tool gap pinned for its tool's running mean gap, then LRU (module docstring)."""

    def __init__(self, host: bool = True) -> None:
        super().__init__(host, "continuum_ttl")
        self.begin(None)

    def begin(self, tl) -> None:
        self.tl = tl
        self.sum: dict[str, float] = defaultdict(float)
        self.n: dict[str, int] = defaultdict(int)
        self.all_sum, self.all_n = 0.0, 0
        self.ttl = np.zeros(len(tl) if tl is not None else 0)

    def on_pause(self, i, t):
        if self.tl.kind[i] != "tool":
            self.ttl[i] = 0.0
            return
        tool = str(self.tl.tool[i])
        if self.n[tool]:
            self.ttl[i] = self.sum[tool] / self.n[tool]
        else:
            self.ttl[i] = self.all_sum / self.all_n if self.all_n else 0.0

    def on_resume(self, i, t):
        if self.tl.kind[i] == "tool":
            g = float(self.tl.end[i] - self.tl.start[i])
            tool = str(self.tl.tool[i])
            self.sum[tool] += g
            self.n[tool] += 1
            self.all_sum += g
            self.all_n += 1

    def key(self, i, pause, t, tl):
        until = pause + self.ttl[i]
        if t < until:
            return (0, -pause), until
        return (DEMOTED, -pause), math.inf


class Belady(LRU):
    """The furthest true resume first; with a host tier, loads back at the true resume minus
    the load time (the oracle)."""

    def __init__(self, host: bool = True) -> None:
        super().__init__(host, "belady")

    def key(self, i, pause, t, tl):
        return (0, float(tl.end[i])), math.inf

    def prefetch_at(self, i, t, load_s, victim_s, tl):
        return float(tl.end[i]) - load_s

    def expected(self, i, t, tl):
        return float(tl.end[i])


class Predicted(LRU):
    """Predicted gap distributions (per-pause quantiles, ms, at ``levels``) on the tiers: the
hint, an eviction order, and the prefetch rule.

**The distribution.** A gap's predicted quantiles as a discrete distribution (the support of
``toollat.hints``: mass between two levels at the upper value, the tail at twice the top
value); after waiting ``a`` it is conditioned on G > a. The *expected resume* is ``pause +
E[G | G > a]`` (``rule="mean"``) or, by default (``"index"``, robust to heavy tails: a p99 of
minutes makes the mean large for a call that most likely returns in a second), ``pause + a +
index``, the index being the fewest token-seconds held per hit over any holding horizon h,
``min_h E[min(G - a, h) | G > a] / P(G <= a + h | G > a)`` with h and ``a`` at the support
points; a step function of ``a``, infinite past the whole support. For a certain gap both
equal Belady's key.

**The hint** (``toollat.hints.decide_plans``; ``hints=False``: none) sets the key's class:
``keep`` T is class 0 for T, then demoted; ``offload`` and ``drop`` are demoted from the pause
(class 1: evicted before every class-0 entry, in GPU and host memory). Every eviction is
written back to the host tier when there is one: ``drop`` means lowest priority, never "not
to host"; the host tier refuses a copy only under pressure (the replay's admission rule).

**Eviction order** within a class: ``order="recency"`` (what ``replay_bundle`` runs): in GPU
memory the least recently used first, a prefetch counting as a use (else the loaded entry
would be the next victim): the engines' own order, so the hint and the prefetch are all that
differs from ``lru+host``. ``order="priority"`` (the priority rule): the largest expected
resume first (holding a paused block until its request resumes saves one re-prefilled token
at a price of (resume - now) token-seconds). In host memory both rank the least recently
paused first, as ``lru+host`` does. On the shared corpus the priority rule is within noise of
LRU on GPU hit rate and, with a host tier, stalls resumes more than recency
(experiments/kv_capacity).

**Prefetch rule** (``prefetch_at``). Starting the load of an entry's host part (L seconds)
at time x after its pause, for a gap G: if G <= x the load never started and the resume
waits L; if x < G < x + L it waits x + L - G (late); else nothing, but the loaded blocks sat
in GPU memory from x to G, displacing as many tokens of the entry the prefetch evicts, which
stalls for its own load L if it resumes while displaced: probability ``min(1, (G - x) / V)``,
V the victim's expected remaining pause (``expected``; V infinite when there is free room).
The expected cost in stall seconds over the support above the time already waited,

    E[ stall(x, G) + L min(1, (G - x) / V) ]   against   L (never load early),

is minimised over x in {now} and {support point - L}: now -> start; a later point -> look
again then (V changes); never -> look again at the next support point. The replay grants a
prefetch only into free room or by evicting entries that rank after the loaded entry and
that the policy expects back later.

``per_tool`` is all this on the per-tool training distribution (the fair baseline),
``toollat`` on the Predictor's causal per-call predictions; human and idle waits get the
bundle's training distribution of human waits in both. Rows without a finite prediction are
demoted and never prefetched.
"""

    def __init__(self, name: str, quantiles_ms: np.ndarray, costs: HintCosts = HintCosts(),
                 levels: Sequence[float] = LEVELS, hints: bool = True, rule: str = "index",
                 host: bool = True, order: str = "priority") -> None:
        super().__init__(host, name)
        if order not in ("priority", "recency") or rule not in ("index", "mean"):
            raise ValueError(f"order is 'priority' or 'recency' and rule 'index' or 'mean', got {order!r}, {rule!r}")
        self.order = order
        self.last = np.zeros(0)                                              # recency: last use
        levels = np.asarray(levels, dtype=np.float64)
        q = np.sort(np.asarray(quantiles_ms, dtype=np.float64), axis=1)
        if q.shape[1] != len(levels):
            raise ValueError(f"{name}: {q.shape[1]} quantile columns for {len(levels)} levels")
        self.known = np.isfinite(q).all(axis=1)
        q = np.where(self.known[:, None], np.maximum(q, 0.0), 0.0) / 1000.0
        probs = np.diff(np.concatenate([[0.0], levels, [1.0]]))
        self.probs = probs
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
        if hints and self.known.any():
            names, ttl_ms, _ = decide_plans(tuple(levels), q[self.known] * 1000.0, costs)
            code = {"keep": 0, "offload": 1, "drop": 2}
            self.action[self.known] = [code[a] for a in names]
            self.ttl_s[self.known] = np.where(np.asarray(names) == "keep", ttl_ms / 1000.0, 0.0)
        self._m = m

    def _passed(self, i: int, pause: float, t: float) -> int:
        """Support points of row i already passed at t (in time since the pause and, against
        rounding, in absolute time)."""
        sup = self.support[i]
        j = int(np.searchsorted(sup, t - pause, side="right"))
        while j < self._m and pause + sup[j] <= t:
            j += 1
        return j

    def _expected(self, i: int, pause: float, j: int) -> float:
        if j >= self._m:
            return math.inf
        if self.rule == "index":
            return pause + (self.support[i, j - 1] if j else 0.0) + self.index[i, j]
        return pause + self.cond_mean[i, j]

    def expected(self, i, t, tl):
        if not self.known[i]:
            return math.inf
        pause = float(tl.start[i])
        return self._expected(i, pause, self._passed(i, pause, t))

    def begin(self, tl) -> None:
        self.last = np.array(tl.start, dtype=np.float64)

    def on_pause(self, i, t):
        self.last[i] = t

    def on_load(self, i, t):
        self.last[i] = t

    def _class(self, i: int, pause: float, t: float) -> tuple[int, float]:
        """The hint's class at t and when it next changes."""
        a = t - pause
        if self.known[i] and self.action[i] == 0 and a < self.ttl_s[i] and t < pause + self.ttl_s[i]:
            return 0, pause + self.ttl_s[i]
        return DEMOTED, math.inf

    def key(self, i, pause, t, tl):
        cls, until = self._class(i, pause, t)
        if self.order == "recency":
            return (cls, -float(self.last[i])), until
        if not self.known[i]:
            return (DEMOTED, math.inf, -pause), math.inf
        j = self._passed(i, pause, t)
        nxt = pause + self.support[i, j] if j < self._m else math.inf
        return (cls, self._expected(i, pause, j), -pause), min(nxt, until)

    def loaded_key(self, i, t, tl):
        if self.order == "recency":
            return (self._class(i, float(tl.start[i]), t)[0], -t)
        return self.key(i, float(tl.start[i]), t, tl)[0]

    def host_key(self, i, key, tl):
        """In host memory: demoted entries first (``drop`` is the lowest priority there too),
        then the least recently paused, as ``lru+host`` ranks them (a prefetch is no use there)."""
        return (key[0], -float(tl.start[i]))

    def recheck_at(self, i, t, tl):
        """When a denied prefetch is looked at again: the next support point."""
        if not self.known[i]:
            return math.inf
        pause = float(tl.start[i])
        j = self._passed(i, pause, t)
        return pause + self.support[i, j] if j < self._m else math.inf

    def prefetch_at(self, i, t, load_s, victim_s, tl):
        """The prefetch rule (class docstring): an absolute time; <= t is now."""
        if not self.known[i]:
            return math.inf
        pause = float(tl.start[i])
        a = t - pause
        sup = self.support[i]
        j0 = int(np.searchsorted(sup, a, side="right"))
        if j0 >= self._m:
            return math.inf                                   # past the whole support
        pts, w = sup[j0:], self.probs[j0:]
        w = w / w.sum()
        L, V = load_s, max(victim_s, 1e-12)

        def cost(x: float) -> float:
            c = 0.0
            for g, p in zip(pts, w):
                if g <= x:
                    c += p * L
                else:
                    c += p * (max(0.0, x + L - g) + (L * min(1.0, (g - x) / V) if V < math.inf else 0.0))
            return c

        best_x, best = None, L                                # never: L for sure
        for x in [a] + [g - L for g in pts if g - L > a]:
            c = cost(x)
            if c < best - 1e-12:
                best_x, best = x, c
        if best_x is None:
            return pause + float(pts[0])                       # look again when the distribution moves on
        return t if best_x <= a else pause + best_x
