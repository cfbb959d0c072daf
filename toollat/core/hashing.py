"""Stable hashes: the same string gives the same number on every machine and in every process.

- ``code(text)``: a 63-bit integer (vocabularies, the bundle's training sessions, folds).
- ``digest(text)``: a 16-byte key (caches keyed by a call's identity, not its text).
- ``session_fold(sessions, k, salt)``: the fold ``0 .. k-1`` of each session id, by its hash.
  Every split of sessions uses it (out-of-fold memory, calibration folds, held-out sessions,
  whole-session partitions); a ``salt`` makes a split independent of the others.
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np


def digest(text: str) -> bytes:
    """A 16-byte key for caches and numbers-only bundles."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def code(text: str) -> int:
    """A stable 63-bit integer for a string (vocabularies store these, never the string)."""
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little") >> 1


def session_hash(session) -> int:
    """The 63-bit hash of a session id (what a bundle keeps of its training sessions)."""
    return code(str(session))


def session_fold(sessions: Iterable, k: int, salt: str | None = None) -> np.ndarray:
    """Each session id's fold in ``0 .. k-1`` (int64), by ``code(id)`` or ``code(salt + "\\x1f" + id)``."""
    if salt is None:
        return np.array([code(str(s)) % k for s in sessions], dtype=np.int64)
    return np.array([code(f"{salt}\x1f{s}") % k for s in sessions], dtype=np.int64)


__all__ = ["code", "digest", "session_hash", "session_fold"]
