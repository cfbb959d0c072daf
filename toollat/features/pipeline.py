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
against a live ``SessionHistory``.

Fitting is four steps, so that one process and a cluster run the same code
(``ToolLatencyModel.fit(calls, executor=...)``):

1. ``survey(part)`` on each partition of the training calls (partitions hold whole sessions, or
   whole projects with ``project``: ``partition_keys``): the vocabularies' hash counts and, with
   text features, the partition's unique texts, their embeddings and per row its text, history
   target and out-of-fold fold.
2. ``Survey.merge(surveys)``: counts summed, texts united.
3. ``finalize(survey)``: vocabularies (most frequent first, ties by hash), the PCA of the united
   texts' vectors, the neighbour memory and one memory per out-of-fold fold (``FoldMemories``,
   the training rows' memory; not saved). Rows are taken in a canonical order (text, target),
   so the statistics are the same sums whatever the partitions were.
4. ``transform(part, folds)`` on each partition: its feature rows, memory out of fold.

The batch methods (survey, finalize, transform) import pandas where they use it; serving (the
online methods) needs numpy alone.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from toollat.budget import NDARRAY, TUPLE2, ByteLRU, MemoryBudget, keys_bytes
from toollat.core.call import MAX_ARG_CHARS, Call, bound_args, calls_from_frame, table_projects
from toollat.core.hashing import code, digest, session_fold
from toollat.core.settings import settings
from toollat.core.timeline import EMIT, events, in_emission_order, visible_ms
from toollat.core.units import history_ms, to_log10_s

from .args import CATEGORICAL as ARG_CATS, CLASS, NUMERIC as ARG_NUMERIC, arg_features
from .context import (APPROVAL_FEATURES, CONTEXT_FEATURES, POLL_FEATURES, PROJECT_APPROVAL_FEATURES, PROJECT_FEATURES,
                      SUBAGENT_FEATURES, HistoryKeys, ProjectHistory, SessionHistory)
from .embed import Embedder
from .memory import MEMORY_FEATURES, NeighborMemory
from .text import embed_text, exact_key

if TYPE_CHECKING:
    import pandas as pd

NAME_CATS: tuple[str, ...] = ("c_tool", "c_family", "c_agent", "c_model", "c_perm")
PERM_FAMILY = "c_perm_fam"   # with ``approval``: agent, permission mode and tool family together


@dataclass(frozen=True)
class FeatureConfig:
    args: bool = True          # parsed arguments
    embeddings: bool = True    # PCA of the sentence embedding
    embedder: str = "minilm"   # "minilm" (sentence-transformers, torch) or "static" (distilled, numpy only)
    static_dims: int = 128     # dimensions of the static embedder
    memory: bool = True        # nearest-neighbour memory of training calls
    context: bool = True       # causal session history
    project: bool = False      # causal history of the project's other sessions (cross-session memory)
    # The tail groups (issue 19; context.py): each a block of columns read off the session history
    approval: bool = False     # approval state: mode per family, waits of fast calls, prefixes seen, human pace
    subagents: bool = False    # subagents: running, earlier durations (overall; per type as the ``sub`` key)
    polls: bool = False        # background jobs and their polls
    pca_dims: int = 16
    memory_dims: int = 64      # memory vectors are the embedding projected to this many dims (0: all 384)
    knn_k: int = 10
    knn_temperature: float = 0.05
    oof_folds: int = 5
    min_category_count: int = 3
    max_categories: int = 250
    max_arg_chars: int = MAX_ARG_CHARS   # the features read this much of a call's arguments (calls.bound_args)

    def __post_init__(self) -> None:
        if self.embedder not in ("minilm", "static"):
            raise ValueError(f"embedder must be minilm or static, not {self.embedder!r}")
        small = {k: getattr(self, k) for k in ("pca_dims", "knn_k", "oof_folds", "max_categories", "max_arg_chars",
                                               "static_dims") if not getattr(self, k) >= 1}
        if small or self.memory_dims < 0 or self.min_category_count < 0 or not self.knn_temperature > 0:
            raise ValueError("pca_dims, knn_k, oof_folds, max_categories, max_arg_chars, static_dims >= 1, "
                             f"memory_dims >= 0, min_category_count >= 0, knn_temperature > 0 ({small or 'got otherwise'})")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "FeatureConfig":
        return settings(cls, d, "feature")

    @property
    def uses_text(self) -> bool:
        return self.embeddings or self.memory

    @property
    def uses_session(self) -> bool:
        """Whether any column reads the session history."""
        return self.context or self.approval or self.subagents or self.polls

    @property
    def uses_class(self) -> bool:
        """Whether the history keys carry the call's class (``args.CLASS``)."""
        return self.approval or self.subagents or self.polls


class Vocab:
    """String -> small int code, stored as the strings' hashes (0 = unknown)."""

    def __init__(self, hashes: list[int] | None = None):
        self.hashes = list(hashes or [])
        self.index = {h: i + 1 for i, h in enumerate(self.hashes)}

    @staticmethod
    def count(values) -> pd.Series:
        """Hash -> how often, of the non-empty strings among ``values`` (a survey's part)."""
        import pandas as pd

        return pd.Series([code(v) for v in values if v], dtype="uint64").value_counts()

    @classmethod
    def from_counts(cls, counts: pd.Series, min_count: int, max_size: int) -> "Vocab":
        """The ``max_size`` most frequent hashes seen at least ``min_count`` times (ties: smaller hash first)."""
        total = counts.groupby(level=0).sum() if len(counts) else counts
        total = total.sort_values(ascending=False, kind="stable")
        keep = total[total >= min_count].index[:max_size]
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


def _keys(call: Call, cats: dict[str, str], config: "FeatureConfig") -> tuple:
    """What the session and project histories remember a call's latency under (``HistoryKeys``);
    with a tail group also its class, and with ``subagents`` a subagent's type (and whether it
    runs in the background) as its ``sub`` key."""
    prog = cats.get("c_program")
    sub = cats.get("c_subcommand")
    if config.subagents and call.family == "agent":
        sub = f"agent:{cats.get('c_kind') or ''}:{cats.get(CLASS)}"
    keys = HistoryKeys(("tool", call.tool), ("fam", call.family), ("prog", prog) if prog else None,
                       ("sub", sub) if sub else None, ("cmd", exact_key(call.tool, call.args)))
    if config.uses_class:
        cls = cats.get(CLASS)
        keys += (("cls", cls) if cls else None,)
    return keys


@dataclass
class Survey:
    """What fitting the pipeline needs of some training calls (step 1 of the module docstring).

    ``counts``: vocabulary name -> hash counts. With text features: ``texts`` (sorted, unique)
    and their ``vecs``; per row ``text_idx`` (into ``texts``), ``y`` (the history target, log10
    s) and ``fold`` (its session's out-of-fold memory fold)."""

    counts: dict[str, pd.Series]
    texts: np.ndarray | None = None
    vecs: np.ndarray | None = None
    text_idx: np.ndarray | None = None
    y: np.ndarray | None = None
    fold: np.ndarray | None = None

    @classmethod
    def merge(cls, surveys: list["Survey"]) -> "Survey":
        """One survey of all the partitions' calls (step 2)."""
        import pandas as pd

        counts = {n: pd.concat([s.counts[n] for s in surveys]) for n in surveys[0].counts}
        if surveys[0].texts is None:
            return cls(counts)
        texts = np.unique(np.concatenate([s.texts for s in surveys]))
        vecs = np.zeros((len(texts), surveys[0].vecs.shape[1]), dtype=surveys[0].vecs.dtype)
        text_idx = []
        for s in surveys:
            where = np.searchsorted(texts, s.texts)
            vecs[where] = s.vecs
            text_idx.append(where[s.text_idx])
        return cls(counts, texts, vecs, np.concatenate(text_idx), np.concatenate([s.y for s in surveys]),
                   np.concatenate([s.fold for s in surveys]))


FoldMemories = list   # one NeighborMemory per out-of-fold fold: the memory training rows read


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
        self._static_cache = ByteLRU(MemoryBudget().bound("feature_cache"), _cache_entry_bytes)
        # What a call text's embedding gives (its PCA projection and neighbour-memory features), by
        # the digest of the text: calls differ in their arguments far more often than in the
        # normalized text (in a held-out stream 11% of calls repeat their arguments, 47% their
        # text), and the embedding and the memory query are most of a never-seen call's cost.
        self.text_cache = ByteLRU(MemoryBudget().bound("embedding_cache"), _text_entry_bytes)

    # -- layout -----------------------------------------------------------------------------
    @property
    def categorical(self) -> list[str]:
        return list(NAME_CATS) + (list(ARG_CATS) if self.config.args else []) + ([PERM_FAMILY] if self.config.approval else [])

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
        if c.approval:
            names += list(APPROVAL_FEATURES) + (list(PROJECT_APPROVAL_FEATURES) if c.project else [])
        if c.subagents:
            names += list(SUBAGENT_FEATURES)
        if c.polls:
            names += list(POLL_FEATURES)
        return names

    # -- static part (per call, no session) ---------------------------------------------------
    def _name_strings(self, call: Call) -> list[str | None]:
        return [call.tool, call.family, call.agent, _model_family(call.model), call.permission_mode]

    @staticmethod
    def _perm_family(call: Call) -> str:
        return f"{call.agent or ''}|{call.permission_mode or ''}|{call.family}"

    def _args(self, call: Call) -> tuple[dict[str, float], dict[str, str]]:
        return arg_features(call.tool, call.family, call.args)

    def _encode_static(self, call: Call, num: dict[str, float], cats: dict[str, str]) -> list[float]:
        row = [self.vocabs[n].encode(v) for n, v in zip(NAME_CATS, self._name_strings(call))]
        if self.config.args:
            row += [self.vocabs[n].encode(cats.get(n)) for n in ARG_CATS]
        if self.config.approval:
            row.append(self.vocabs[PERM_FAMILY].encode(self._perm_family(call)))
        if self.config.args:
            row += [num.get(n, math.nan) for n in ARG_NUMERIC]
        return row

    def _embed(self, texts: list[str], progress: bool) -> np.ndarray:
        if self.embedder is None:
            raise RuntimeError("this feature configuration needs an Embedder")
        return self.embedder.encode(texts, progress=progress)

    def _project(self, vecs: np.ndarray, dims: int) -> np.ndarray:
        # in float64: float32 products came out a bit different for the same row in a batch of
        # another size (BLAS picks its kernel by shape), and so did a partition's rows on a cluster
        return (vecs.astype(np.float64) - self.pca_mean) @ self.pca_components[:dims].T.astype(np.float64)

    def _memory_vectors(self, vecs: np.ndarray) -> np.ndarray:
        d = self.config.memory_dims
        if not d:
            return vecs
        p = self._project(vecs, d)
        return (p / np.maximum(np.linalg.norm(p, axis=1, keepdims=True), 1e-12)).astype(np.float32)

    # -- fitting (module docstring) ---------------------------------------------------------
    def partition_keys(self, df: pd.DataFrame) -> np.ndarray:
        """What a partition of training calls must hold whole, as a key per call: its session
        (the session context replays each session alone); with ``project`` features, the group
        of sessions and projects linked by a call (the project history replays a project's
        sessions together, and a session can work in several projects). A call's key depends on
        its session alone."""
        sessions = df["session_id"].to_numpy()
        if not self.config.project:
            return sessions
        parent: dict = {}

        def root(x):
            parent.setdefault(x, x)
            while parent[x] != x:
                parent[x] = parent[parent[x]]
                x = parent[x]
            return x

        for s, p in set(zip(sessions.tolist(), table_projects(df))):
            a, b = root(("s", s)), root(("p", p or ""))
            if a != b:
                parent[max(a, b)] = min(a, b)
        return np.array([repr(root(("s", s))) for s in sessions.tolist()], dtype=object)

    def survey(self, df: pd.DataFrame, progress: bool = False) -> Survey:
        """Step 1 for a partition of training calls."""
        c = self.config
        calls = calls_from_frame(df, c.max_arg_chars)
        strings = dict(zip(NAME_CATS, zip(*[self._name_strings(x) for x in calls]))) if calls else {n: () for n in NAME_CATS}
        if c.args:
            parsed = [self._args(x) for x in calls]
            strings.update({n: [p[1].get(n) for p in parsed] for n in ARG_CATS})
        if c.approval:
            strings[PERM_FAMILY] = [self._perm_family(x) for x in calls]
        out = Survey({n: Vocab.count(v) for n, v in strings.items()})
        if c.uses_text:
            texts, text_idx = np.unique([embed_text(x.tool, x.args) for x in calls], return_inverse=True)
            out.texts, out.text_idx = texts, text_idx.reshape(-1)
            out.vecs = self._embed(list(texts), progress) if len(texts) else np.zeros((0, 0), np.float32)
            out.y = to_log10_s(history_ms(df, self.target))
            out.fold = session_fold(df["session_id"], c.oof_folds)
        return out

    def finalize(self, survey: Survey) -> FoldMemories:
        """Step 3: learn the vocabularies, the PCA and the memory; the out-of-fold memories."""
        c = self.config
        self.vocabs = {n: Vocab.from_counts(survey.counts[n], c.min_category_count, c.max_categories)
                       for n in self.categorical}
        folds: FoldMemories = []
        if c.uses_text:
            vecs = survey.vecs
            self.pca_mean = vecs.mean(axis=0)
            _, _, vt = np.linalg.svd(vecs - self.pca_mean, full_matrices=False)
            self.pca_components = vt[: max(c.pca_dims, c.memory_dims)].astype(np.float32)
            if c.memory:
                order = np.lexsort((survey.y, survey.text_idx))   # the same sums in any partitioning
                idx, y, fold = survey.text_idx[order], survey.y[order], survey.fold[order]
                mvecs = self._memory_vectors(vecs)
                self.memory = NeighborMemory.build(mvecs, idx, y, c.knn_k, c.knn_temperature)
                for f in range(c.oof_folds):
                    out = fold != f
                    folds.append(NeighborMemory.build(mvecs, idx[out], y[out], c.knn_k, c.knn_temperature))
        return folds

    def fit_transform(self, df: pd.DataFrame, progress: bool = False) -> np.ndarray:
        """``finalize(survey(df))`` then ``transform(df, folds)``: the whole fit in one partition."""
        folds = self.finalize(Survey.merge([self.survey(df, progress)]))
        return self.transform(df, progress, folds)

    def _expected(self, blocks: list[np.ndarray]) -> np.ndarray | None:
        """Each call's memory estimate (m_knn_y), which history residuals are measured against."""
        if not self.config.memory:
            return None
        return blocks[-1][:, MEMORY_FEATURES.index("m_knn_y")]

    def transform(self, df: pd.DataFrame, progress: bool = False, folds: FoldMemories | None = None) -> np.ndarray:
        """Features of calls, each session replayed from empty. Calls the pipeline never saw get
        the fitted memory; training calls (``folds`` from ``finalize``) their session's out-of-fold one."""
        calls = calls_from_frame(df, self.config.max_arg_chars)
        parsed = [self._args(c) for c in calls]
        c = self.config
        blocks = [np.array([self._encode_static(x, *p) for x, p in zip(calls, parsed)], dtype=np.float64).reshape(len(calls), -1)]
        if c.uses_text:
            texts, text_idx = np.unique([embed_text(x.tool, x.args) for x in calls], return_inverse=True)
            text_idx = text_idx.reshape(-1)
            vecs = self._embed(list(texts), progress) if len(texts) else np.zeros((0, len(self.pca_mean)), np.float32)
            if c.embeddings:
                blocks.append(self._project(vecs, c.pca_dims)[text_idx])
            if c.memory:
                mvecs = self._memory_vectors(vecs)
                if folds:
                    fold = session_fold(df["session_id"], c.oof_folds)
                    mem = np.empty((len(calls), len(MEMORY_FEATURES)))
                    for f, memory in enumerate(folds):
                        inside = fold == f
                        if inside.any():
                            uniq, inv = np.unique(text_idx[inside], return_inverse=True)
                            mem[inside] = memory.query(mvecs[uniq])[inv.reshape(-1)]
                    blocks.append(mem)
                else:
                    blocks.append(self.memory.query(mvecs)[text_idx])
        if c.uses_session or c.project:
            blocks += self._replay(df, calls, parsed, self._expected(blocks))
        return np.hstack(blocks).astype(np.float32)

    def _replay(self, df: pd.DataFrame, calls: list[Call], parsed, expected: np.ndarray | None) -> list[np.ndarray]:
        """History blocks by replaying the calls in time order (see context.py): the session
        context (each session alone) and, with ``project``, the project history (every session
        of a project together). Results become visible by ``core.timeline``'s rule."""
        n = len(calls)
        seen = history_ms(df, self.target)                   # what a result teaches the history
        err = df["is_error"].to_numpy(dtype=bool) if "is_error" in df else np.zeros(n, bool)
        emitted = np.array([x.emitted_ms for x in calls], dtype=np.float64)
        sessions = df["session_id"].to_numpy()
        visible = visible_ms(sessions, df["parallel_group"], emitted, df["wall_ms"].to_numpy(dtype=np.float64))
        keys = [_keys(x, p[1], self.config) for x, p in zip(calls, parsed)]
        c = self.config
        width = len(self._session_names())
        blocks = []
        if c.uses_session:
            out = np.empty((n, width), dtype=np.float64)
            for idx in in_emission_order(sessions, emitted):
                hist = SessionHistory()
                for t, kind, i in events(idx, emitted, visible):
                    call = calls[i]
                    if kind == EMIT:
                        out[i] = self._session_features(hist, call, keys[i], t)
                        hist.emit(call, keys[i], t, expected[i] if expected is not None else math.nan)
                    else:
                        hist.observe(keys[i], seen[i], bool(err[i]), at_ms=t, call_id=call.call_id,
                                     expected=expected[i] if expected is not None else math.nan)
        if c.project:
            proj_out = np.empty((n, len(self._project_names())), dtype=np.float64)
            projects = np.array([x.project or "" for x in calls], dtype=object)
            for idx in in_emission_order(projects, emitted):
                proj = ProjectHistory()
                for t, kind, i in events(idx, emitted, visible):
                    if kind == EMIT:
                        proj_out[i] = self._project_features(proj, keys[i])
                    else:
                        proj.observe(keys[i], seen[i], bool(err[i]))
        # columns in ``names`` order: context, project, approval, subagents, polls
        nc = len(CONTEXT_FEATURES) if c.context else 0
        if c.context:
            blocks.append(out[:, :nc])
        if c.project:
            blocks.append(proj_out[:, :len(PROJECT_FEATURES)])
        if c.approval:
            blocks.append(out[:, nc:nc + len(APPROVAL_FEATURES)])
            if c.project:
                blocks.append(proj_out[:, len(PROJECT_FEATURES):])
        if c.subagents or c.polls:
            blocks.append(out[:, nc + (len(APPROVAL_FEATURES) if c.approval else 0):])
        return blocks

    # -- the history blocks, one place for the replay and for serving ---------------------------
    def _session_names(self) -> list[str]:
        c = self.config
        return ((list(CONTEXT_FEATURES) if c.context else []) + (list(APPROVAL_FEATURES) if c.approval else [])
                + (list(SUBAGENT_FEATURES) if c.subagents else []) + (list(POLL_FEATURES) if c.polls else []))

    def _project_names(self) -> list[str]:
        return list(PROJECT_FEATURES) + (list(PROJECT_APPROVAL_FEATURES) if self.config.approval else [])

    def _session_features(self, hist: SessionHistory, call: Call, keys: tuple, now_ms: float | None) -> list[float]:
        """The session history's columns of a call at its emission: context, approval, subagents,
        polls (those configured, in that order)."""
        c = self.config
        f = hist.features(call, keys, now_ms) if c.context else []
        if c.approval:
            f += hist.approval_features(call, keys, now_ms)
        if c.subagents:
            f += hist.subagent_features(call, keys, now_ms)
        if c.polls:
            f += hist.poll_features(call, keys, now_ms)
        return f

    def _project_features(self, proj: ProjectHistory, keys: tuple) -> list[float]:
        f = proj.features(keys)
        if self.config.approval:
            f += proj.approval_features(keys)
        return f

    # -- online (the Predictor) -----------------------------------------------------------------
    def bounded(self, call: Call) -> Call:
        """The call with its arguments cut to what the features read (the same object if they fit)."""
        args = bound_args(call.args, self.config.max_arg_chars)
        return call if args is call.args else dataclasses.replace(call, args=args)

    @staticmethod
    def static_key(call: Call) -> bytes:
        """The feature cache's key of a (bounded) call: a 16-byte digest, not the argument text,
        so a cache entry costs its feature row and keys whatever the text's size."""
        return digest("\x1f".join((call.tool, _canonical(call.args), call.agent or "", call.model or "",
                                    call.permission_mode or "")))

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
            return hit
        num, cats = self._args(call)
        parts = [np.array(self._encode_static(call, num, cats), dtype=np.float64)]
        if self.config.uses_text:
            parts.append(self.text_features(embed_text(call.tool, call.args)))
        hit = (np.concatenate(parts).astype(np.float32), _keys(call, cats, self.config))
        self._static_cache.put(ck, hit)
        return hit

    def bound_cache(self, max_bytes: float) -> None:
        """Hold at most ``max_bytes`` of cached static features (the Predictor's budget share)."""
        self._static_cache.max_bytes = max_bytes
        self._static_cache.evict()

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
        return self._static_cache.usage()

    def online_row(self, call: Call, history: SessionHistory | None, now_ms: float | None,
                   project: ProjectHistory | None = None) -> tuple[np.ndarray, tuple]:
        static, keys = self.static_row(call)
        c = self.config
        if not (c.uses_session or c.project):
            return static, keys
        sess = self._session_features(history or SessionHistory(), call, keys, now_ms) if c.uses_session else []
        proj = self._project_features(project or ProjectHistory(), keys) if c.project else []
        nc = len(CONTEXT_FEATURES) if c.context else 0
        na = len(APPROVAL_FEATURES) if c.approval else 0
        # in ``names`` order: context, project, approval (+ its project part), subagents, polls
        row = sess[:nc] + proj[:len(PROJECT_FEATURES)] + sess[nc:nc + na] + proj[len(PROJECT_FEATURES):] + sess[nc + na:]
        return np.concatenate([static, np.asarray(row, dtype=np.float32)]), keys

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


def _canonical(args: dict | None) -> str:
    """Arguments as one canonical string (sorted keys), for the cache key: orjson, ten times
    faster than json here; json for what orjson refuses (integers past 64 bits, keys that are
    not strings, which only a Python caller can send)."""
    if args is None:
        return "\x00"
    try:
        return orjson.dumps(args, option=orjson.OPT_SORT_KEYS).decode()
    except TypeError:
        return json.dumps(args, sort_keys=True, default=repr)


def _text_entry_bytes(key: bytes, block: np.ndarray) -> int:
    return len(key) + 33 + NDARRAY + block.nbytes


def _cache_entry_bytes(key: bytes, hit: tuple[np.ndarray, tuple]) -> int:
    row, keys = hit
    return len(key) + 33 + TUPLE2 + NDARRAY + row.nbytes + keys_bytes(keys)
