"""The one feature pipeline: training, evaluation and the Predictor all build features here.

Columns, in order (``FeaturePipeline.names``):

- name: tool, family, agent, model, permission mode (categorical codes)
- args: ``args.NUMERIC`` and ``args.CATEGORICAL`` (program, subcommand, extension, kind)
- embeddings: the sentence embedding of ``text.embed_text`` reduced by PCA to ``pca_dims``
- memory: ``memory.MEMORY_FEATURES`` from the k nearest training texts
- context: ``context.CONTEXT_FEATURES`` from the causal session history

Categorical strings become small integer codes through vocabularies of string *hashes* learned
at fit (unknown -> 0), so a saved pipeline holds numbers only. Training rows get memory features
out of fold (sessions split into folds; a row's neighbours come from other folds' sessions), as
a held-out call would. ``transform`` treats every call as unseen; ``online_row`` serves one call
against a live ``SessionHistory``. The batch methods (fit, transform) import pandas where they
use it; serving (the online methods) needs numpy alone.
"""
from __future__ import annotations

import dataclasses
import json
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toollat.budget import NDARRAY, ODICT_SLOT, TUPLE2, ByteLRU, MemoryBudget, keys_bytes
from toollat.units import history_ms

from .args import CATEGORICAL as ARG_CATS, NUMERIC as ARG_NUMERIC, arg_features
from .calls import MAX_ARG_CHARS, Call, bound_args, calls_from_frame
from .context import CONTEXT_FEATURES, PROJECT_FEATURES, HistoryKeys, ProjectHistory, SessionHistory
from .embed import Embedder
from .memory import MEMORY_FEATURES, NeighborMemory
from .text import code, digest, embed_text, exact_key

if TYPE_CHECKING:
    import pandas as pd

NAME_CATS: tuple[str, ...] = ("c_tool", "c_family", "c_agent", "c_model", "c_perm")


@dataclass
class FeatureConfig:
    args: bool = True          # parsed arguments
    embeddings: bool = True    # PCA of the sentence embedding
    embedder: str = "minilm"   # "minilm" (sentence-transformers, torch) or "static" (distilled, numpy only)
    static_dims: int = 128     # dimensions of the static embedder
    memory: bool = True        # nearest-neighbour memory of training calls
    context: bool = True       # causal session history
    project: bool = False      # causal history of the project's other sessions (cross-session memory)
    pca_dims: int = 16
    memory_dims: int = 64      # memory vectors are the embedding projected to this many dims (0: all 384)
    knn_k: int = 10
    knn_temperature: float = 0.05
    oof_folds: int = 5
    min_category_count: int = 3
    max_categories: int = 250
    max_arg_chars: int = MAX_ARG_CHARS   # the features read this much of a call's arguments (calls.bound_args)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureConfig":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def uses_text(self) -> bool:
        return self.embeddings or self.memory


class Vocab:
    """String -> small int code, stored as the strings' hashes (0 = unknown)."""

    def __init__(self, hashes: list[int] | None = None):
        self.hashes = list(hashes or [])
        self.index = {h: i + 1 for i, h in enumerate(self.hashes)}

    @classmethod
    def fit(cls, values: list[str | None], min_count: int, max_size: int) -> "Vocab":
        import pandas as pd

        counts = pd.Series([code(v) for v in values if v]).value_counts()
        keep = counts[counts >= min_count].index[:max_size]
        return cls([int(h) for h in keep])

    def encode(self, value: str | None) -> float:
        return float(self.index.get(code(value), 0)) if value else 0.0


def _model_family(model: str | None) -> str | None:
    """Model names collapse to their family (dates and minor versions vary across logs)."""
    if not model:
        return None
    m = model.lower()
    for fam in ("opus", "sonnet", "haiku", "fable", "gpt-5", "gpt-4", "o3", "o4", "gemini", "codex"):
        if fam in m:
            return fam
    return m.split("-")[0]


def _keys(call: Call, cats: dict[str, str]) -> HistoryKeys:
    prog = cats.get("c_program")
    sub = cats.get("c_subcommand")
    return HistoryKeys(("tool", call.tool), ("fam", call.family), ("prog", prog) if prog else None,
                       ("sub", sub) if sub else None, ("cmd", exact_key(call.tool, call.args)))


class FeaturePipeline:
    def __init__(self, config: FeatureConfig | None = None, embedder: Embedder | None = None, target: str = "wall"):
        self.config = config or FeatureConfig()
        self.embedder = embedder
        self.target = target  # which latency the session history replays (units.history_ms)
        self.vocabs: dict[str, Vocab] = {}
        self.pca_mean = np.zeros(0, dtype=np.float32)
        self.pca_components = np.zeros((0, 0), dtype=np.float32)
        self.memory: NeighborMemory | None = None
        # Static features of the calls served, by digest (toollat/budget.py: the Predictor sets
        # the bound from its memory budget; an entry is its row and keys, whatever the text's size).
        self._static_cache: OrderedDict = OrderedDict()
        self.static_cache_max_bytes = MemoryBudget().bound("feature_cache")
        self.static_cache_bytes = 0
        self._static_cache_hw = 0   # most entries ever held: the table does not shrink
        # What a call text's embedding gives (its PCA projection and neighbour-memory features), by
        # the digest of the text: calls differ in their arguments far more often than in the
        # normalized text (in a held-out stream 11% of calls repeat their arguments, 47% their
        # text), and the embedding and the memory query are most of a never-seen call's cost.
        self.text_cache = ByteLRU(MemoryBudget().bound("embedding_cache"), _text_entry_bytes)

    # -- layout -----------------------------------------------------------------------------
    @property
    def categorical(self) -> list[str]:
        return list(NAME_CATS) + (list(ARG_CATS) if self.config.args else [])

    @property
    def names(self) -> list[str]:
        c = self.config
        names = self.categorical
        if c.args:
            names += list(ARG_NUMERIC)
        if c.embeddings:
            names += [f"emb_{i}" for i in range(c.pca_dims)]
        if c.memory:
            names += list(MEMORY_FEATURES)
        if c.context:
            names += list(CONTEXT_FEATURES)
        if c.project:
            names += list(PROJECT_FEATURES)
        return names

    # -- static part (per call, no session) ---------------------------------------------------
    def _name_strings(self, call: Call) -> list[str | None]:
        return [call.tool, call.family, call.agent, _model_family(call.model), call.permission_mode]

    def _args(self, call: Call) -> tuple[dict[str, float], dict[str, str]]:
        return arg_features(call.tool, call.family, call.args)

    def _encode_static(self, call: Call, num: dict[str, float], cats: dict[str, str]) -> list[float]:
        row = [self.vocabs[n].encode(v) for n, v in zip(NAME_CATS, self._name_strings(call))]
        if self.config.args:
            row += [self.vocabs[n].encode(cats.get(n)) for n in ARG_CATS]
            row += [num.get(n, math.nan) for n in ARG_NUMERIC]
        return row

    def _embed(self, texts: list[str], progress: bool) -> np.ndarray:
        if self.embedder is None:
            raise RuntimeError("this feature configuration needs an Embedder")
        return self.embedder.encode(texts, progress=progress)

    def _project(self, vecs: np.ndarray, dims: int) -> np.ndarray:
        return (vecs - self.pca_mean) @ self.pca_components[:dims].T

    def _memory_vectors(self, vecs: np.ndarray) -> np.ndarray:
        d = self.config.memory_dims
        if not d:
            return vecs
        p = self._project(vecs, d)
        return (p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    # -- batch --------------------------------------------------------------------------------
    def fit_transform(self, df: pd.DataFrame, y: np.ndarray, progress: bool = False) -> np.ndarray:
        """Learn vocabularies, PCA and memory from training rows; their features (memory out of fold)."""
        calls = calls_from_frame(df, self.config.max_arg_chars)
        parsed = [self._args(c) for c in calls]
        c = self.config
        name_cols = list(zip(*[self._name_strings(x) for x in calls]))
        self.vocabs = {n: Vocab.fit(list(col), c.min_category_count, c.max_categories) for n, col in zip(NAME_CATS, name_cols)}
        if c.args:
            for n in ARG_CATS:
                self.vocabs[n] = Vocab.fit([p[1].get(n) for p in parsed], c.min_category_count, c.max_categories)
        static = np.array([self._encode_static(x, *p) for x, p in zip(calls, parsed)], dtype=np.float64)
        blocks = [static]
        if c.uses_text:
            texts, text_idx = np.unique([embed_text(x.tool, x.args) for x in calls], return_inverse=True)
            vecs = self._embed(list(texts), progress)
            self.pca_mean = vecs.mean(axis=0)
            _, _, vt = np.linalg.svd(vecs - self.pca_mean, full_matrices=False)
            self.pca_components = vt[: max(c.pca_dims, c.memory_dims)].astype(np.float32)
            if c.embeddings:
                blocks.append(self._project(vecs, c.pca_dims)[text_idx])
            if c.memory:
                mvecs = self._memory_vectors(vecs)
                self.memory = NeighborMemory.build(mvecs, text_idx, y, c.knn_k, c.knn_temperature)
                blocks.append(self._oof_memory(mvecs, text_idx, y, df["session_id"].to_numpy()))
        if c.context or c.project:
            blocks += self._replay(df, calls, parsed, self._expected(blocks))
        return np.hstack(blocks).astype(np.float32)

    def _expected(self, blocks: list[np.ndarray]) -> np.ndarray | None:
        """Each call's memory estimate (m_knn_y), which history residuals are measured against."""
        if not self.config.memory:
            return None
        return blocks[-1][:, MEMORY_FEATURES.index("m_knn_y")]

    def _oof_memory(self, mvecs: np.ndarray, text_idx: np.ndarray, y: np.ndarray, sessions: np.ndarray) -> np.ndarray:
        c = self.config
        fold = np.array([code(str(s)) % c.oof_folds for s in sessions])
        out = np.empty((len(y), len(MEMORY_FEATURES)))
        for f in range(c.oof_folds):
            inside = fold == f
            if not inside.any():
                continue
            mem = NeighborMemory.build(mvecs, text_idx[~inside], y[~inside], c.knn_k, c.knn_temperature)
            uniq, inv = np.unique(text_idx[inside], return_inverse=True)
            out[inside] = mem.query(mvecs[uniq])[inv]
        return out

    def transform(self, df: pd.DataFrame, progress: bool = False) -> np.ndarray:
        """Features of calls the pipeline never saw (each session replayed from empty)."""
        calls = calls_from_frame(df, self.config.max_arg_chars)
        parsed = [self._args(c) for c in calls]
        c = self.config
        blocks = [np.array([self._encode_static(x, *p) for x, p in zip(calls, parsed)], dtype=np.float64).reshape(len(calls), -1)]
        if c.uses_text:
            texts, text_idx = np.unique([embed_text(x.tool, x.args) for x in calls], return_inverse=True)
            vecs = self._embed(list(texts), progress) if len(texts) else np.zeros((0, len(self.pca_mean)), np.float32)
            if c.embeddings:
                blocks.append(self._project(vecs, c.pca_dims)[text_idx])
            if c.memory:
                blocks.append(self.memory.query(self._memory_vectors(vecs))[text_idx])
        if c.context or c.project:
            blocks += self._replay(df, calls, parsed, self._expected(blocks))
        return np.hstack(blocks).astype(np.float32)

    def _replay(self, df: pd.DataFrame, calls: list[Call], parsed, expected: np.ndarray | None) -> list[np.ndarray]:
        """History blocks by replaying the calls in time order (see context.py): the session
        context (each session alone) and, with ``project``, the project history (every session
        of a project together)."""
        import pandas as pd

        n = len(calls)
        wall = df["wall_ms"].to_numpy(dtype=np.float64)      # when a result arrives
        seen = history_ms(df, self.target)                   # what it teaches the history
        err = df["is_error"].to_numpy(dtype=bool) if "is_error" in df else np.zeros(n, bool)
        emitted = np.array([x.emitted_ms for x in calls], dtype=np.float64)
        result = emitted + wall
        keys = [_keys(x, p[1]) for x, p in zip(calls, parsed)]
        # A result becomes visible once it arrived and its whole parallel group was emitted.
        frame = pd.DataFrame({"s": df["session_id"].to_numpy(), "g": df["parallel_group"].fillna("").to_numpy(), "e": emitted})
        group_last = frame.groupby(["s", "g"], sort=False)["e"].transform("max").to_numpy()
        visible = np.maximum(result, group_last)
        blocks = []
        if self.config.context:
            out = np.empty((n, len(CONTEXT_FEATURES)), dtype=np.float64)
            for idx in _groups(frame["s"].to_numpy(), emitted):
                hist = SessionHistory()
                for t, kind, i in _events(idx, emitted, visible):
                    call = calls[i]
                    if kind == 0:
                        out[i] = hist.features(call, keys[i], t)
                        hist.emit(call, keys[i], t, expected[i] if expected is not None else math.nan)
                    else:
                        hist.observe(keys[i], seen[i], bool(err[i]), at_ms=t, call_id=call.call_id,
                                     expected=expected[i] if expected is not None else math.nan)
            blocks.append(out)
        if self.config.project:
            out = np.empty((n, len(PROJECT_FEATURES)), dtype=np.float64)
            projects = np.array([x.project or "" for x in calls], dtype=object)
            for idx in _groups(projects, emitted):
                proj = ProjectHistory()
                for t, kind, i in _events(idx, emitted, visible):
                    if kind == 0:
                        out[i] = proj.features(keys[i])
                    else:
                        proj.observe(keys[i], seen[i], bool(err[i]))
            blocks.append(out)
        return blocks

    # -- online (the Predictor) -----------------------------------------------------------------
    def bounded(self, call: Call) -> Call:
        """The call with its arguments cut to what the features read (the same object if they fit)."""
        args = bound_args(call.args, self.config.max_arg_chars)
        return call if args is call.args else dataclasses.replace(call, args=args)

    @staticmethod
    def static_key(call: Call) -> bytes:
        """The feature cache's key of a (bounded) call: a 16-byte digest, not the argument text,
        so a cache entry costs its feature row and keys whatever the text's size."""
        return digest("\x1f".join((call.tool, json.dumps(call.args, sort_keys=True) if call.args is not None else "\x00",
                                    call.agent or "", call.model or "", call.permission_mode or "")))

    def is_cached(self, key: bytes) -> bool:
        return key in self._static_cache

    def prefetch(self, calls: list[Call]) -> None:
        """Encode together the texts of these calls whose features are not cached: the encoder
        batches them (a 2,000-text request was 2,000 passes of one text), and ``static_row`` then
        finds each vector in the embedder's cache."""
        if len(calls) < 2 or not self.config.uses_text or self.embedder is None:
            return
        texts = {t for t in (embed_text(b.tool, b.args) for b in map(self.bounded, calls)
                             if self.static_key(b) not in self._static_cache) if digest(t) not in self.text_cache}
        if len(texts) > 1:
            self._embed(sorted(texts), False)

    def static_row(self, call: Call) -> tuple[np.ndarray, tuple]:
        """Static features and history keys of one call, cached by the call's identity."""
        call = self.bounded(call)
        ck = self.static_key(call)
        hit = self._static_cache.get(ck)
        if hit is not None:
            self._static_cache.move_to_end(ck)
            return hit
        num, cats = self._args(call)
        parts = [np.array(self._encode_static(call, num, cats), dtype=np.float64)]
        if self.config.uses_text:
            parts.append(self.text_features(embed_text(call.tool, call.args)))
        hit = (np.concatenate(parts).astype(np.float32), _keys(call, cats))
        self._static_cache[ck] = hit
        self.static_cache_bytes += _cache_entry_bytes(ck, hit)
        if len(self._static_cache) > self._static_cache_hw:
            self._static_cache_hw = len(self._static_cache)
        while self.static_cache_bytes + self._static_cache_hw * ODICT_SLOT > self.static_cache_max_bytes \
                and len(self._static_cache) > 1:
            self.static_cache_bytes -= _cache_entry_bytes(*self._static_cache.popitem(last=False))
        return hit

    def text_features(self, text: str) -> np.ndarray:
        """The features of a call's normalized text: the embedding's PCA projection and the
        neighbour memory's summary (cached by the text's digest in ``text_cache``)."""
        key = digest(text)
        block = self.text_cache.get(key)
        if block is None:
            c = self.config
            vec = self._embed([text], False)
            parts = []
            if c.embeddings:
                parts.append(self._project(vec, c.pca_dims)[0])
            if c.memory:
                parts.append(self.memory.query(self._memory_vectors(vec))[0])
            block = np.concatenate(parts)
            self.text_cache.put(key, block)
        return block

    def static_cache_usage(self) -> tuple[int, int]:
        """(bytes, entries) of the feature cache: an upper bound (toollat/budget.py)."""
        return self.static_cache_bytes + self._static_cache_hw * ODICT_SLOT, len(self._static_cache)

    def online_row(self, call: Call, history: SessionHistory | None, now_ms: float | None,
                   project: ProjectHistory | None = None) -> tuple[np.ndarray, tuple]:
        static, keys = self.static_row(call)
        c = self.config
        if not (c.context or c.project):
            return static, keys
        parts = [static]
        if c.context:
            parts.append(np.asarray((history or SessionHistory()).features(call, keys, now_ms), dtype=np.float32))
        if c.project:
            parts.append(np.asarray((project or ProjectHistory()).features(keys), dtype=np.float32))
        return np.concatenate(parts), keys

    # -- save / load (numbers only) -------------------------------------------------------------
    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        state = {
            "config": asdict(self.config),
            "names": self.names,
            "categorical": self.categorical,
            "vocabs": {n: v.hashes for n, v in self.vocabs.items()},
        }
        (directory / "features.json").write_text(json.dumps(state, indent=1))
        if self.config.uses_text and self.config.embedder == "static":
            self.embedder.save(directory, "static")  # the embedder is part of the bundle (numbers only)
        if self.config.uses_text:
            np.save(directory / "pca_mean.npy", self.pca_mean.astype(np.float32), allow_pickle=False)
            np.save(directory / "pca_components.npy", self.pca_components.astype(np.float32), allow_pickle=False)
        if self.config.memory and self.memory is not None:
            self.memory.save(directory)

    @classmethod
    def load(cls, directory: Path, embedder: Embedder | None, target: str = "wall") -> "FeaturePipeline":
        directory = Path(directory)
        state = json.loads((directory / "features.json").read_text())
        config = FeatureConfig.from_dict(state["config"])
        if config.uses_text and config.embedder == "static":
            from .static_embed import StaticEmbedder

            embedder = StaticEmbedder.load(directory, "static")
        pipe = cls(config, embedder, target)
        if pipe.names != state["names"]:
            raise ValueError("bundle features do not match this toollat version's feature layout")
        pipe.vocabs = {n: Vocab([int(h) for h in hashes]) for n, hashes in state["vocabs"].items()}
        c = pipe.config
        if c.uses_text:
            pipe.pca_mean = np.load(directory / "pca_mean.npy", allow_pickle=False)
            pipe.pca_components = np.load(directory / "pca_components.npy", allow_pickle=False)
        if c.memory:
            pipe.memory = NeighborMemory.load(directory, c.knn_k, c.knn_temperature)
        return pipe


def _text_entry_bytes(key: bytes, block: np.ndarray) -> int:
    return len(key) + 33 + NDARRAY + block.nbytes


def _cache_entry_bytes(key: bytes, hit: tuple[np.ndarray, tuple]) -> int:
    row, keys = hit
    return len(key) + 33 + TUPLE2 + NDARRAY + row.nbytes + keys_bytes(keys)


def _groups(labels: np.ndarray, emitted: np.ndarray):
    """Row indices of each label (a session, a project), in emission order."""
    import pandas as pd

    n = len(labels)
    codes, _ = pd.factorize(pd.Series(labels))
    order = np.lexsort((np.arange(n), emitted, codes))
    sorted_codes = codes[order]
    bounds = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1], True])
    for a, b in zip(bounds[:-1], bounds[1:]):
        yield order[a:b]


def _events(idx: np.ndarray, emitted: np.ndarray, visible: np.ndarray) -> list[tuple[float, int, int]]:
    """Emissions (0) and visible results (1) of these rows in time order; at equal times an
    emission comes first, so a call never sees a result that arrives at its own instant."""
    ev = [(emitted[i], 0, k, i) for k, i in enumerate(idx)] + [(visible[i], 1, k, i) for k, i in enumerate(idx)]
    ev.sort()
    return [(t, kind, i) for t, kind, _, i in ev]
