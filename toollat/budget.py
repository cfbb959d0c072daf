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
        return cls(**(d or {}))

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
    """A mapping bounded in bytes: past ``max_bytes`` its least recently used entries go.

    ``size(key, value)`` is an entry's upper bound (its slot in the table is added here, at the
    most entries the table ever held, since a dict's table does not shrink). Not thread-safe:
    its owner locks around it."""

    def __init__(self, max_bytes: float, size: Callable[[Any, Any], int]):
        self.max_bytes = max_bytes
        self._size = size
        self._d: OrderedDict = OrderedDict()
        self._bytes = 0
        self._hw = 0

    def get(self, key: Any) -> Any:
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
        return v

    def __contains__(self, key: Any) -> bool:
        return key in self._d

    def __len__(self) -> int:
        return len(self._d)

    def put(self, key: Any, value: Any) -> None:
        old = self._d.pop(key, None)
        if old is not None:
            self._bytes -= self._size(key, old)
        self._d[key] = value
        self._bytes += self._size(key, value)
        self._hw = max(self._hw, len(self._d))
        while len(self._d) > 1 and self.nbytes > self.max_bytes:
            k, v = self._d.popitem(last=False)
            self._bytes -= self._size(k, v)

    @property
    def nbytes(self) -> int:
        """What it holds now, an upper bound."""
        return self._bytes + self._hw * ODICT_SLOT

    def clear(self) -> None:
        self._d.clear()
        self._bytes = 0


__all__ = ["ByteLRU", "MemoryBudget", "STORES"]
