"""Nearest-neighbour memory over training calls: what calls like this one took.

Entries are unique normalized call texts (their embedding vectors) with the latency statistics
of the training calls that had that text: count, mean and variance of log latency, share of
long calls. A query finds the ``k`` most similar entries by cosine similarity and summarizes
them (similarity-weighted). The memory holds numbers only, no text.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from toollat.core.units import LONG_Y

MEMORY_FEATURES: tuple[str, ...] = (
    "m_sim1", "m_y1", "m_n1", "m_exact_n", "m_exact_y", "m_knn_y", "m_knn_std", "m_knn_long", "m_knn_sim",
)
EXACT_SIM = 0.995
SCREEN = 2e-5   # the float32 screen keeps every entry this close to its k-th (its error is under 5e-6)


class NeighborMemory:
    def __init__(self, k: int = 10, temperature: float = 0.05):
        self.k = k
        self.temperature = temperature
        self.vecs = np.zeros((0, 0), dtype=np.float32)
        self.n = np.zeros(0)
        self.mean = np.zeros(0)
        self.var = np.zeros(0)
        self.long = np.zeros(0)
        self._t64: np.ndarray | None = None
        self._c32: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_t64": None, "_c32": None}   # shipped without the copies (made on first query)

    def _cols32(self) -> np.ndarray:
        """The vectors as (dims, entries), contiguous: one call's screen runs along entries."""
        if self._c32 is None or self._c32.shape[1] != len(self.vecs):
            self._c32 = np.ascontiguousarray(self.vecs.T)
        return self._c32

    def _rows64(self) -> np.ndarray:
        """The vectors in float64, (entries, dims): what the nearest entries are ranked by."""
        if self._t64 is None or len(self._t64) != len(self.vecs):
            self._t64 = self.vecs.astype(np.float64)
        return self._t64

    @classmethod
    def build(cls, vecs: np.ndarray, groups: np.ndarray, y: np.ndarray, k: int = 10, temperature: float = 0.05) -> "NeighborMemory":
        """``vecs`` per unique text; ``groups[i]`` the unique-text index of call i with log latency ``y[i]``."""
        mem = cls(k, temperature)
        used, inv = np.unique(groups, return_inverse=True)
        n = np.bincount(inv).astype(np.float64)
        s = np.bincount(inv, weights=y)
        s2 = np.bincount(inv, weights=y * y)
        # held at the precision the bundle stores (float16 vectors, float32 statistics), so a
        # saved and reloaded memory answers exactly as the one that was fitted
        mem.vecs = np.ascontiguousarray(vecs[used], dtype=np.float16).astype(np.float32)
        stats = np.stack([n, s / n, np.maximum(s2 / n - (s / n) ** 2, 0.0),
                          np.bincount(inv, weights=(y >= LONG_Y).astype(np.float64)) / n], axis=1)
        mem.n, mem.mean, mem.var, mem.long = stats.astype(np.float32).astype(np.float64).T.copy()
        return mem

    def __len__(self) -> int:
        return len(self.n)

    def query(self, q: np.ndarray, chunk: int = 1024) -> np.ndarray:
        """(m, len(MEMORY_FEATURES)) for query vectors ``q`` (L2-normalized), one row at a time
        through ``_nearest`` (a batch and a single call give the same numbers, to the last bit)."""
        m = len(q)
        out = np.full((m, len(MEMORY_FEATURES)), np.nan, dtype=np.float64)
        if m == 0 or len(self) == 0:
            return out
        k = min(self.k, len(self))
        q64 = np.asarray(q, dtype=np.float64)
        q32 = q64.astype(np.float32)
        for start in range(0, m, chunk):
            block = q32[start:start + chunk]
            # One row (a serving call) without BLAS: OpenBLAS runs even a matrix-vector product
            # on all its threads, and on a host whose cores are busy (a serving engine's) a
            # query then waits up to milliseconds for them; numpy's own loop takes ~80 us always
            screen = np.einsum("j,ji->i", block[0], self._cols32())[None, :] if len(block) == 1 \
                else block @ self.vecs.T
            for r in range(len(screen)):
                out[start + r] = self._nearest(q64[start + r], screen[r], k)
        return out

    def _nearest(self, q: np.ndarray, screen: np.ndarray, k: int) -> list[float]:
        """The summary of ``q``'s k nearest entries. ``screen`` is a float32 product with every
        entry (its rounding depends on the BLAS kernel, so on the batch's shape, by up to ~4e-6
        for these unit vectors): the entries within ``SCREEN`` of its k-th largest are the only
        ones that can be among the k nearest. Those are ranked by a float64 product computed
        entry by entry (the same arithmetic whatever the batch), largest first and equal ones by
        entry, and summarized on numbers."""
        n_all = len(screen)
        if k < n_all:
            kth = np.partition(screen, n_all - k)[n_all - k]
            cand = np.flatnonzero(screen >= kth - SCREEN)
        else:
            cand = np.arange(n_all)
        sims = (self._rows64()[cand] * q).sum(axis=1)
        order = np.lexsort((cand, -sims))[:k]
        idx = cand[order]
        top = sims[order].tolist()
        n, mean, var, lng = (a[idx].tolist() for a in (self.n, self.mean, self.var, self.long))
        t0 = top[0]
        w = [math.sqrt(ni) * math.exp((t - t0) / self.temperature) for ni, t in zip(n, top)]
        wsum = sum(w)
        ky = sum(wi * mi for wi, mi in zip(w, mean)) / wsum
        kvar = sum(wi * (vi + (mi - ky) ** 2) for wi, vi, mi in zip(w, var, mean)) / wsum
        exact = t0 >= EXACT_SIM
        ln0 = math.log10(n[0])
        return [t0, mean[0], ln0, ln0 if exact else 0.0, mean[0] if exact else float("nan"), ky, math.sqrt(kvar),
                sum(wi * li for wi, li in zip(w, lng)) / wsum, sum(top) / len(top)]

    # -- bundle I/O (numbers only) ----------------------------------------------------------
    def save(self, directory: Path) -> None:
        np.save(directory / "memory_vectors.npy", self.vecs.astype(np.float16), allow_pickle=False)
        np.save(directory / "memory_stats.npy", np.stack([self.n, self.mean, self.var, self.long], axis=1).astype(np.float32), allow_pickle=False)

    @classmethod
    def load(cls, directory: Path, k: int, temperature: float) -> "NeighborMemory":
        mem = cls(k, temperature)
        mem.vecs = np.load(directory / "memory_vectors.npy", allow_pickle=False).astype(np.float32)
        stats = np.load(directory / "memory_stats.npy", allow_pickle=False).astype(np.float64)
        if stats.ndim != 2 or stats.shape[1] != 4 or len(stats) != len(mem.vecs):
            raise ValueError("memory_stats.npy does not match memory_vectors.npy")
        mem.n, mem.mean, mem.var, mem.long = stats.T.copy()
        return mem
