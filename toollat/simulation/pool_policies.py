"""The shared-pool replay's policies: which paused KV to evict, and when to load it back.

``pool.replay`` asks a policy four things (``LRU`` is the base every policy extends):

- ``key(i, pause, t, tl) -> (key, next_change)``: the eviction key of paused entry ``i`` at
  time ``t`` (larger is evicted first, in GPU and host memory alike; its first element is its
  class: 0, or ``DEMOTED`` = 1, evicted before every class-0 entry) and when it next changes.
- ``host``: whether it uses a host tier when there is one (``lru`` does not: GPU only).
- ``prefetch_at(i, t, load_s, victim_s, tl) -> time``: for an entry with KV in host memory, when to
  start loading it back (``pool`` docstring: a prefetch; <= t: now; ``inf``: never). ``load_s``
  is the time its host part takes to load, ``victim_s`` how long the entry a prefetch would
  evict is expected to stay paused (``inf``: nothing to evict, or a victim expected never).
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
- ``per_tool`` and ``toollat`` (``Predicted``): the priority rule on predicted quantiles, the
  hint on the tiers and the prefetch rule (``Predicted`` docstring).
"""
from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from toollat.hints import HintCosts, decide_plans
from toollat.units import LEVELS

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


class Predicted(LRU):
    """The priority rule on per-pause predicted quantiles (ms, at ``levels``), the hint on the
    tiers, and the prefetch rule.

    **Priority rule** (eviction order). Holding a paused block until its request resumes saves
    one re-prefilled token at a price of (resume - now) token-seconds, so its value density is
    1 / (expected resume - now): evict the largest *expected resume time*. Given the gap's
    predicted quantiles as a discrete distribution (the support of ``toollat.hints``: mass
    between two levels at the upper value, the tail at twice the top value) and the time ``a``
    already waited, the expected resume is ``pause + E[G | G > a]``, a step function of ``a``
    that changes at the support points; past the whole support it is infinite. That is
    ``rule="mean"``; the default ``"index"`` refines it for heavy tails (a p99 of minutes makes
    the mean large for a call that most likely returns in a second): the fewest token-seconds
    held per hit over any holding horizon h, ``min_h E[min(G - a, h) | G > a] / P(G <= a + h |
    G > a)``, with h and ``a`` at the support points, and the key ``pause + a + index``. For a
    certain gap both equal Belady's key.

    **The hint on the tiers** (``toollat.hints.decide_plans``; ``hints=False``: none): ``keep``
    T ranks by expected resume for T, then is demoted (below every kept entry); ``offload`` and
    ``drop`` are demoted from the pause. Every eviction is written back to the host tier when
    there is one: ``drop`` means lowest priority there too, never "not to host"; the host tier
    refuses a copy only under pressure, by the replay's admission rule (``pool`` docstring).
    ``per_tool`` is the same rule on the per-tool training distribution (the fair baseline),
    ``toollat`` on the Predictor's causal per-call predictions; human and idle waits get the
    bundle's training distribution of human waits in both. Rows without a finite prediction
    rank as LRU among demoted entries and are never prefetched.

    **Prefetch rule** (``prefetch_at``). Starting the load of an entry's host part (L seconds)
    at time x after its pause, for a gap G: if G <= x the load never started and the resume
    waits L; if x < G < x + L it waits x + L - G (late); else nothing, but the loaded blocks sat
    in GPU memory from x to G, displacing the same number of tokens of the entry the prefetch
    evicts, which stalls for its own load L if it resumes while displaced: probability
    ``min(1, (G - x) / V)`` with V the victim's expected remaining pause (its key, so the
    policy's own ranking prices GPU memory; V infinite when there is free room). The expected
    cost in stall seconds, over the predicted support above the time already waited,

        E[ stall(x, G) + L min(1, (G - x) / V) ]   against   L (never load early),

    is minimised over x in {now} and {support point - L}: now -> start; a later point -> look
    again then (V changes); never -> look again at the next support point. The replay grants a
    prefetch only into free room or by evicting entries that rank after it.
    """

    def __init__(self, name: str, quantiles_ms: np.ndarray, costs: HintCosts = HintCosts(),
                 levels: Sequence[float] = LEVELS, hints: bool = True, rule: str = "index",
                 host: bool = True) -> None:
        super().__init__(host, name)
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

    def key(self, i, pause, t, tl):
        if not self.known[i]:
            return (DEMOTED, math.inf, -pause), math.inf
        a = t - pause
        sup = self.support[i]
        j = int(np.searchsorted(sup, a, side="right"))      # support points already passed (<= a)
        while j < self._m and pause + sup[j] <= t:          # in absolute time too (rounding)
            j += 1
        if j >= self._m:
            expected = math.inf
        elif self.rule == "index":
            expected = pause + (sup[j - 1] if j else 0.0) + self.index[i, j]
        else:
            expected = pause + self.cond_mean[i, j]
        nxt = pause + sup[j] if j < self._m else math.inf
        kept = self.action[i] == 0 and a < self.ttl_s[i] and t < pause + self.ttl_s[i]
        if kept:
            nxt = min(nxt, pause + self.ttl_s[i])
        demoted = not kept
        return ((DEMOTED if demoted else 0), expected, -pause), nxt

    def host_key(self, i, key, tl):
        """In host memory: demoted entries first (``drop`` is the lowest priority there too),
        then the least recently paused (the host-tier engines' own order)."""
        return (key[0], -float(tl.start[i]))

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
