"""One memory budget for everything a serving process grows from client input.

A ``Predictor`` (and so ``toollat serve``) holds stores that clients fill: the per-session
history, the calls awaiting their result, the cross-session project stores, the per-call
feature cache and the in-memory embedding cache. Each store gets a share of ``budget_mb``,
accounts its bytes as it grows, and evicts its least recently used entries (whole sessions,
oldest first) when it is over its share; so the sum of what the stores hold never exceeds the
budget, whatever clients send. ``GET /v1/model`` reports each store's bytes and entries.

The bytes are an upper bound computed from each entry's sizes, not a measurement: a string
counts ``sys.getsizeof`` (exact for ``str``: header plus 1, 2 or 4 bytes a character), every
container slot and object a fixed overhead taken generously above what CPython 3.11 allocates
(``tests/test_budget.py`` checks the bound against ``tracemalloc``). A string shared by two
entries is counted in both, so the bound is conservative.

The defaults are ``conf/serving/default.yaml``'s (the test checks they agree), so a Predictor
made in Python and an installed ``toollat serve`` without the checkout's ``conf/`` behave alike.
"""
from __future__ import annotations

import sys
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from toollat.core.settings import settings

STORES = ("sessions", "pending", "projects", "feature_cache", "embedding_cache")

# Fixed overheads (bytes), each above what CPython 3.11 allocates on 64-bit Linux. A dict slot is
# charged for the sparsest table a dict has right after it grows (entries array half used, index
# table six times the entries); an OrderedDict also has its linked-list node and node table.
DICT_SLOT = 72
ODICT_SLOT = 176
TUPLE2 = 72            # a (kind, value) key: 56 bytes and the GC header
FLOAT = 24
OBJECT = 112           # a small __slots__ object (up to 8 slots) with its GC header
NDARRAY = 112          # a numpy array header (the data is counted separately)


def tuple_bytes(n: int) -> int:
    """A tuple of ``n`` items (its items counted separately)."""
    return 40 + 8 * n


def str_bytes(s: str | bytes | None) -> int:
    return sys.getsizeof(s) if s is not None else 0


def keys_bytes(keys: tuple | None) -> int:
    """A ``HistoryKeys`` tuple of ``(kind, value)`` pairs with their values (kinds are interned literals)."""
    if keys is None:
        return 0
    return OBJECT + sum(TUPLE2 + sys.getsizeof(k[-1]) for k in keys if k is not None)


@dataclass(frozen=True)
class MemoryBudget:
    """How much the client-grown stores may hold, and how it is split among them.

    ``budget_mb`` None means no byte bound (offline replays that must not forget a session);
    the entry caps ``max_sessions`` / ``max_pending`` hold either way."""

    budget_mb: float | None = 512.0
    shares: dict[str, float] = field(default_factory=lambda: {
        "sessions": 0.5, "pending": 0.1, "projects": 0.1, "feature_cache": 0.15, "embedding_cache": 0.15})
    session_kib: float = 1024.0    # one session's history: past it, the session stops adding new tools/commands
    max_sessions: int = 10_000
    max_pending: int = 100_000

    def __post_init__(self) -> None:
        if set(self.shares) != set(STORES):
            raise ValueError(f"memory shares must name exactly {list(STORES)}, got {sorted(self.shares)}")
        if any(not 0 < v <= 1 for v in self.shares.values()) or abs(sum(self.shares.values()) - 1) > 1e-6:
            raise ValueError(f"memory shares must each be in (0, 1] and sum to 1, got {self.shares}")
        if self.budget_mb is not None and not self.budget_mb > 0:
            raise ValueError(f"memory budget_mb must be positive (or null for no bound), got {self.budget_mb!r}")
        if not self.session_kib > 0 or self.max_sessions < 1 or self.max_pending < 1:
            raise ValueError("memory: session_kib > 0, max_sessions >= 1, max_pending >= 1")
        if self.budget_mb is not None and self.session_bytes > self.bound("sessions"):
            raise ValueError(f"memory: one session ({self.session_kib:g} KiB) exceeds the sessions share "
                             f"({self.bound('sessions') / 2**20:.1f} MiB)")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "MemoryBudget":
        return settings(cls, d, "memory")

    @property
    def budget_bytes(self) -> int | None:
        return None if self.budget_mb is None else int(self.budget_mb * 2**20)

    def bound(self, store: str) -> float:
        """Bytes ``store`` may hold (inf without a budget)."""
        total = self.budget_bytes
        return float("inf") if total is None else float(int(total * self.shares[store]))

    @property
    def session_bytes(self) -> int:
        return int(self.session_kib * 1024)


DEFAULT_SESSION_BYTES = MemoryBudget().session_bytes


class ByteLRU:
    """A store bounded in bytes (and entries), least recently used first out: every store that
    clients grow is one (sessions, pending calls, project stores, the feature and text caches).

    ``size(key, value)`` is an entry's bytes (an upper bound, this module's overheads); an entry
    that grows in place says so with ``grew``. The table's slots are charged at the most entries
    it ever held (``ODICT_SLOT`` each: an OrderedDict's table does not shrink): ``nbytes`` is
    the whole upper bound. Past ``max_bytes`` or ``max_entries`` the least recently used entries
    go, down to ``keep`` entries (1, the default: one entry larger than the bound stays rather
    than none), each passed to ``on_evict``. Not thread-safe (its owner locks around it)."""

    __slots__ = ("_d", "_size", "max_bytes", "max_entries", "keep", "on_evict", "_bytes", "_hw")

    def __init__(self, max_bytes: float, size: Callable[[Any, Any], int], max_entries: float = float("inf"),
                 keep: int = 1, on_evict: Callable[[Any, Any], None] | None = None):
        self._d: OrderedDict = OrderedDict()
        self._size = size
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self.keep = keep
        self.on_evict = on_evict
        self._bytes = 0      # the entries' bytes, without the table's slots
        self._hw = 0         # most entries ever held

    def __len__(self) -> int:
        return len(self._d)

    def __contains__(self, key) -> bool:
        return key in self._d

    def __getitem__(self, key):
        return self._d[key]

    def __iter__(self):
        return iter(self._d)

    def get(self, key, default=None):
        """The value, now the most recently used (``default`` if absent)."""
        v = self._d.get(key, default)
        if v is not default:
            self._d.move_to_end(key)
        return v

    def peek(self, key, default=None):
        """The value, its recency unchanged."""
        return self._d.get(key, default)

    def put(self, key, value) -> None:
        """Add or replace (a replaced entry keeps its place), then evict what is over the bounds."""
        old = self._d.get(key)
        if old is not None:
            self._bytes -= self._size(key, old)
        self._d[key] = value
        self._bytes += self._size(key, value)
        if len(self._d) > self._hw:
            self._hw = len(self._d)
        self.evict()

    def pop(self, key, default=None):
        v = self._d.pop(key, None)
        if v is None:
            return default
        self._bytes -= self._size(key, v)
        return v

    def grew(self, key, delta: int) -> None:
        """An entry's bytes changed in place by ``delta``; evict what is over the bounds."""
        if key in self._d:
            self._bytes += delta
            self.evict()

    @property
    def nbytes(self) -> int:
        """An upper bound of what the store holds: its entries and its table's slots."""
        return self._bytes + self._hw * ODICT_SLOT

    def evict(self) -> None:
        d = self._d
        while len(d) > self.keep and (len(d) > self.max_entries or self.nbytes > self.max_bytes):
            key, value = d.popitem(last=False)
            self._bytes -= self._size(key, value)
            if self.on_evict is not None:
                self.on_evict(key, value)

    def clear(self) -> None:
        self._d.clear()
        self._bytes = 0
        self._hw = 0

    def usage(self) -> tuple[int, int]:
        """(bytes, entries)."""
        return self.nbytes, len(self._d)


__all__ = ["ByteLRU", "MemoryBudget", "STORES"]
