"""Nearest-neighbour memory over training calls: what calls like this one took.

Entries are unique normalized call texts (their embedding vectors) with the latency statistics
of the training calls that had that text: count, mean and variance of log latency, share of
long calls. A query finds the ``k`` most similar entries by cosine similarity and summarizes
them (similarity-weighted). The memory holds numbers only, no text.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from toollat.units import LONG_Y

MEMORY_FEATURES: tuple[str, ...] = (
    "m_sim1", "m_y1", "m_n1", "m_exact_n", "m_exact_y", "m_knn_y", "m_knn_std", "m_knn_long", "m_knn_sim",
)
EXACT_SIM = 0.995


class NeighborMemory:
    def __init__(self, k: int = 10, temperature: float = 0.05):
        self.k = k
        self.temperature = temperature
        self.vecs = np.zeros((0, 0), dtype=np.float32)
        self.n = np.zeros(0)
        self.mean = np.zeros(0)
        self.var = np.zeros(0)
        self.long = np.zeros(0)

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
        """(m, len(MEMORY_FEATURES)) for query vectors ``q`` (L2-normalized)."""
        m = len(q)
        out = np.full((m, len(MEMORY_FEATURES)), np.nan, dtype=np.float64)
        if m == 0 or len(self) == 0:
            return out
        k = min(self.k, len(self))
        if m == 1:
            out[0] = self._query_one(q[0], k)
            return out
        for start in range(0, m, chunk):
            sims = q[start:start + chunk] @ self.vecs.T
            idx = np.argpartition(-sims, k - 1, axis=1)[:, :k] if k < sims.shape[1] else np.tile(np.arange(k), (len(sims), 1))
            top = np.take_along_axis(sims, idx, axis=1)
            order = np.argsort(-top, axis=1)
            idx = np.take_along_axis(idx, order, axis=1)
            top = np.take_along_axis(top, order, axis=1)
            n, mean, var, lng = self.n[idx], self.mean[idx], self.var[idx], self.long[idx]
            w = np.sqrt(n) * np.exp((top - top[:, :1]) / self.temperature)
            wsum = w.sum(axis=1)
            ky = (w * mean).sum(axis=1) / wsum
            kvar = (w * (var + (mean - ky[:, None]) ** 2)).sum(axis=1) / wsum
            exact = top[:, 0] >= EXACT_SIM
            block = out[start:start + chunk]
            block[:, 0] = top[:, 0]
            block[:, 1] = mean[:, 0]
            block[:, 2] = np.log10(n[:, 0])
            block[:, 3] = np.where(exact, np.log10(n[:, 0]), 0.0)
            block[:, 4] = np.where(exact, mean[:, 0], np.nan)
            block[:, 5] = ky
            block[:, 6] = np.sqrt(kvar)
            block[:, 7] = (w * lng).sum(axis=1) / wsum
            block[:, 8] = top.mean(axis=1)
        return out

    def _query_one(self, q: np.ndarray, k: int) -> list[float]:
        """``query`` of one vector (a serving call): the same operations on 1-D arrays, without
        the 2-D indexing helpers that cost more than the arithmetic at this size. The similarities
        come from the same product as one row of a batch, and ties are broken the same way."""
        sims = (q[None, :] @ self.vecs.T)[0]
        idx = np.argpartition(-sims, k - 1)[:k] if k < len(sims) else np.arange(k)
        top = sims[idx]
        order = np.argsort(-top)
        idx, top = idx[order], top[order]
        n, mean, var, lng = self.n[idx], self.mean[idx], self.var[idx], self.long[idx]
        w = np.sqrt(n) * np.exp((top - top[:1]) / self.temperature)
        wsum = w.sum()
        ky = (w * mean).sum() / wsum
        kvar = (w * (var + (mean - ky) ** 2)).sum() / wsum
        t0, n0, y0 = float(top[0]), float(n[0]), float(mean[0])
        exact = t0 >= EXACT_SIM
        ln0 = float(np.log10(n[:1])[0])
        return [t0, y0, ln0, ln0 if exact else 0.0, y0 if exact else float("nan"), float(ky), float(np.sqrt(kvar)),
                float((w * lng).sum() / wsum), float(top.mean())]

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
