"""``ToolLatencyModel``: the one trained artifact. Training, ``evaluate``, ``simulate``,
``replay`` and the ``Predictor`` all use it.

scikit-learn style:

```python
from toollat import ToolLatencyModel
m = ToolLatencyModel(target="wall", tools={"families": ["shell", "search"]})   # hyper-parameters only
m.fit(train_calls)                  # learns the feature pipeline, the model, the baselines, human waits
m.fit(train_calls, executor=DaskExecutor(client))   # the same fit on a Dask cluster (toollat.distributed)
m.predict(test_calls)               # pure: a DataFrame pred_p10_ms .. pred_p99_ms, pred_p_long
m.save("models/mine"); ToolLatencyModel.load("models/mine")
```

The constructor stores its arguments untouched (``get_params``); everything ``fit`` learns ends
in ``_`` and is set in one place (``_set_fitted``), for a fit on either executor and for ``load``.
``fit`` is one plan whatever runs it (``toollat.executor``): survey each partition of the calls,
merge, finalize the feature pipeline, featurize each partition, fit the model on the rows (where
they are held) and the baselines on their narrow table. ``predict`` treats every call as unseen (each session replayed from an empty history)
and never changes the model. Calls outside the tool scope get the per-tool median baseline.

Save/load: the bundle (``toollat.bundle``) holds the constructor parameters and the fitted state
as plain files (JSON, ``.npy`` without pickle, LightGBM text models) with a checksum of each;
loading looks model kinds up in a registry (``toollat.models.MODELS``), so a card never names
code to run. Nothing of the training calls' argument text is stored: vocabularies are hashes,
the memory vectors and statistics, the training sessions 63-bit hashes of their ids (so
``evaluate`` can warn when it is given calls the model trained on).
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toollat import bundle as bundle_io
from toollat.core.hashing import code, session_hash
from toollat.core.timeline import human_waits
from toollat.core.units import (LEVELS, LONG_MS, P_LONG_COLUMN, TARGETS, check_levels, p_exceeds, prediction_columns,
                                target_ms, to_log10_s, to_ms)
from toollat.features.embed import Embedder
from toollat.features.pipeline import FeatureConfig, FeaturePipeline, Survey
from toollat.features.text import command_key
from toollat.hints import HintCosts
from toollat.models import MODELS, LatencyModel, Prediction, build, build_baselines
from toollat.models.base import Rows
from toollat.models.bounds import DurationBounds
from toollat.online import OnlineConfig

if TYPE_CHECKING:  # tables come from training and evaluation; serving never imports pandas
    import pandas as pd

MODEL = "toollat"
BASELINE_ORDER = ("per_tool_median", "per_command_mean", "global_median")
DEFAULT_MODEL: dict[str, Any] = {"kind": "lgbm"}
MIN_TRAIN_CALLS = 50


def static_embedder(cache: Path, dims: int):
    """The static embedder distilled from MiniLM at ``dims``: from the cache, or distilled (about
    15 s, needs torch) and cached."""
    from toollat.features.static_embed import StaticEmbedder, StaticEmbedderError

    where = Path(cache) / "static" / f"minilm-d{dims}"
    if (where / "static.json").is_file():
        try:
            return StaticEmbedder.load(where)
        except StaticEmbedderError:
            pass  # damaged: distil again
    emb = StaticEmbedder.distill(dims)
    emb.save(where)
    return emb


class NotFittedError(RuntimeError):
    """``predict``/``save`` on a model that was never fitted."""


def in_scope(df: pd.DataFrame, tools: dict[str, Any] | None) -> np.ndarray:
    """Calls a model learns and is scored on: ``{"families": [...], "names": [...]}`` (null: all)."""
    mask = np.ones(len(df), dtype=bool)
    if tools:
        fams, names = tools.get("families"), tools.get("names")
        if fams:
            mask &= df["tool_family"].isin(list(fams)).to_numpy()
        if names:
            mask &= df["tool_name"].isin(list(names)).to_numpy()
    return mask


def human_gap_distribution(human: pd.DataFrame, levels=LEVELS, min_n: int = 20) -> dict[str, Any] | None:
    """Quantiles (ms) of the waits before human turns (``human_waits_by_agent``), overall and per
    agent with at least ``min_n`` of them; None if there are fewer than ``min_n``."""
    if len(human) < min_n:
        return None
    out = {"levels": list(levels), "n": int(len(human)),
           "ms": {"*": [float(v) * 1000.0 for v in np.quantile(human["gap_s"], levels)]}}
    for a, g in human.groupby("agent"):
        if len(g) >= min_n:
            out["ms"][str(a)] = [float(v) * 1000.0 for v in np.quantile(g["gap_s"], levels)]
    return out


def human_waits_by_agent(calls: pd.DataFrame) -> pd.DataFrame:
    """``core.timeline.human_waits`` of a calls table with each session's agent: ``gap_s``, ``agent``."""
    import pandas as pd

    human = human_waits(calls)
    agents = calls.drop_duplicates("session_id").set_index("session_id")["agent"]
    return pd.DataFrame({"gap_s": human["gap_s"].to_numpy(dtype=np.float64),
                         "agent": human["session_id"].map(agents).to_numpy()})


def session_hashes(sessions) -> np.ndarray:
    """63-bit hashes of session ids (what a bundle keeps of its training sessions)."""
    return np.unique(np.array([session_hash(s) for s in {str(s) for s in sessions}], dtype=np.uint64))


# -- the fit's steps on a partition of the training calls (toollat.executor runs them) ------------
def _survey(part: pd.DataFrame, pipeline: FeaturePipeline, progress: bool = False) -> dict[str, Any] | None:
    """What the whole fit needs of a partition before any feature row: the pipeline's survey, the
    training sessions, the human waits (None for an empty partition)."""
    if len(part) == 0:
        return None
    return {"features": pipeline.survey(part, progress), "sessions": session_hashes(part["session_id"]),
            "human": human_waits_by_agent(part)}


def _rows(part: pd.DataFrame, pipeline: FeaturePipeline, folds, tools, target: str, progress: bool = False) -> Rows:
    """A partition's training rows: its in-scope calls with a known target, featurized (memory out of fold)."""
    if len(part) == 0:
        return Rows.empty(len(pipeline.names))
    X = pipeline.transform(part, progress, folds)
    y = target_ms(part, target)
    keep = in_scope(part, tools) & ~np.isnan(y)
    sub = part[keep]
    sessions = sub["session_id"].tolist()
    return Rows(X[keep], to_log10_s(y[keep]), sub["tool_name"].astype(str).to_numpy(dtype=object),
                sub["tool_family"].astype(str).to_numpy(dtype=object),
                np.array([command_key(t, a) for t, a in zip(sub["tool_name"], sub["args"])], dtype=np.uint64),
                np.array([session_hash(s) for s in sessions], dtype=np.uint64),
                np.array([code(f"{s}\x1f{q}") for s, q in zip(sessions, sub["seq"].tolist())], dtype=np.uint64))


class ToolLatencyModel:
    """Predicts a tool call's blocking time as quantiles and a long-call probability."""

    def __init__(self, *, name: str = "toollat", target: str = "wall", tools: dict[str, Any] | None = None,
                 levels: tuple[float, ...] | list[float] = LEVELS, features: dict[str, Any] | None = None,
                 model: dict[str, Any] | None = None, hints: dict[str, Any] | None = None,
                 bounds: dict[str, Any] | None = None, online: dict[str, Any] | None = None,
                 threads: int = 2, seed: int = 0,
                 embedder: Embedder | None = None):
        self.name = name
        self.target = target
        self.tools = tools
        self.levels = levels
        self.features = features
        self.model = model
        self.hints = hints
        self.bounds = bounds
        self.online = online
        self.threads = threads
        self.seed = seed
        self.embedder = embedder  # a runtime resource (the encoder and its cache), not saved

    # -- parameters ---------------------------------------------------------------------------
    PARAMS = ("name", "target", "tools", "levels", "features", "model", "hints", "bounds", "online", "threads", "seed")

    def get_params(self) -> dict[str, Any]:
        """The constructor's hyper-parameters (JSON-able; ``embedder`` is a runtime resource)."""
        return {k: copy.deepcopy(getattr(self, k)) for k in self.PARAMS}

    @classmethod
    def from_config(cls, cfg: dict[str, Any], embedder: Embedder | None = None) -> "ToolLatencyModel":
        """From a resolved training config (``conf/config.yaml`` and its groups)."""
        return cls(name=cfg["name"], target=cfg["target"]["name"], tools=cfg.get("tools"),
                   levels=tuple(cfg.get("levels", LEVELS)), features=dict(cfg["features"]),
                   model=dict(cfg["model"]), hints=dict(cfg["hints"]), bounds=dict(cfg.get("bounds") or {}),
                   online=dict(cfg.get("online") or {}),
                   threads=cfg.get("threads", 2), seed=cfg.get("seed", 0), embedder=embedder)

    def _checked(self) -> tuple[tuple[float, ...], FeatureConfig, dict[str, Any], HintCosts]:
        """Validated hyper-parameters (scikit-learn validates at fit, not in the constructor); each
        group through its owner (``core.settings``)."""
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, not {self.target!r}")
        levels = check_levels(self.levels)
        spec = dict(self.model or DEFAULT_MODEL)
        if spec.get("kind") not in MODELS:
            raise ValueError(f"unknown model kind {spec.get('kind')!r}; known: {sorted(MODELS)}")
        if self.tools is not None and (not isinstance(self.tools, dict) or set(self.tools) - {"families", "names"}):
            raise ValueError("tools must be {'families': [...] | null, 'names': [...] | null} or null")
        DurationBounds.from_dict(self.bounds)
        OnlineConfig.from_dict(self.online)
        return levels, FeatureConfig.from_dict(self.features), spec, HintCosts.from_dict(self.hints)

    @property
    def hint_costs(self) -> HintCosts:
        return HintCosts.from_dict(self.hints)

    def _embedder(self, fcfg: FeatureConfig | None = None):
        """The text encoder the features use: the runtime MiniLM ``Embedder`` (cached on disk), or
        for ``features.embedder=static`` the distilled static embedder (built once per machine
        and dimension in the cache, then stored in the bundle)."""
        from toollat.paths import cache_dir

        if fcfg is not None and fcfg.embedder == "static":
            return static_embedder(cache_dir(), fcfg.static_dims)
        if self.embedder is None:
            self.embedder = Embedder(cache_dir(), threads=self.threads)
        return self.embedder

    # -- fitting ------------------------------------------------------------------------------
    def fit(self, calls, executor=None, progress: bool = False) -> "ToolLatencyModel":
        """Learn from a canonical calls table (pandas; on a Dask executor also a Dask DataFrame whose
        partitions hold whole sessions). Features see every call (the session context needs
        them); the model and baselines learn the in-scope calls with a known target.
        ``executor``: where the steps run (``toollat.executor``; default this process)."""
        from toollat.extras import require

        require("data", "ToolLatencyModel.fit")
        levels, _, spec, _ = self._checked()
        started = time.perf_counter()
        pipeline, data, sessions, human = self.training_rows(calls, executor, progress)
        seconds_features = time.perf_counter() - started
        if data.n < MIN_TRAIN_CALLS:
            raise ValueError(f"only {data.n} training calls in scope {self.tools} with a known "
                             f"{self.target} latency: too few to train on (at least {MIN_TRAIN_CALLS})")
        t = time.perf_counter()
        model = build(spec, levels, threads=self.threads, seed=self.seed).fit(data)
        narrow = data.narrow()
        baselines = {n: b.fit(narrow, None, narrow["y"].to_numpy(), pipeline.names)
                     for n, b in build_baselines(levels, self.target).items()}
        return self._set_fitted(pipeline, model, baselines, human_gap_distribution(human, levels), sessions, data.n,
                                {"seconds_features": seconds_features, "seconds_fit": time.perf_counter() - t}, {})

    def training_rows(self, calls, executor=None, progress: bool = False):
        """The fit's first part: the fitted feature pipeline and the training rows, held where the
        executor holds them (``models.base.TrainingData``), with the training sessions' hashes and
        the human waits. ``fit`` goes on from here."""
        import pandas as pd

        from toollat.executor import LocalExecutor

        _, fcfg, _, _ = self._checked()
        ex = executor if executor is not None else LocalExecutor()
        pipeline = FeaturePipeline(fcfg, self._embedder(fcfg) if fcfg.uses_text else None, target=self.target)
        if ex.remote and hasattr(pipeline.embedder, "flush"):
            pipeline.embedder.flush()  # what this process encoded reaches the disk cache the workers read
        parts = ex.partition(calls, pipeline.partition_keys)
        progress = progress and not ex.remote   # bars in this process only
        surveys = [s for s in ex.gather(ex.map(_survey, parts, ex.share(pipeline), progress=progress)) if s is not None]
        folds = pipeline.finalize(Survey.merge([s["features"] for s in surveys]))
        sessions = np.unique(np.concatenate([s["sessions"] for s in surveys]))
        human = pd.concat([s["human"] for s in surveys], ignore_index=True)
        del surveys
        data = ex.training_data(ex.map(_rows, parts, ex.share(pipeline), ex.share(folds), self.tools, self.target,
                                       progress=progress), pipeline.names)
        return pipeline, data, sessions, human

    def _set_fitted(self, pipeline: FeaturePipeline, model: LatencyModel, baselines: dict[str, LatencyModel],
                    human_gaps: dict[str, Any] | None, sessions: np.ndarray, n_train_calls: int,
                    timings: dict[str, float], card: dict[str, Any]) -> "ToolLatencyModel":
        """The fitted state, from a fit (on any executor) or a bundle: the one place that sets it."""
        if set(baselines) != set(BASELINE_ORDER):
            raise ValueError(f"baselines {sorted(baselines)} (expected {sorted(BASELINE_ORDER)})")
        sessions = np.asarray(sessions)
        if sessions.dtype != np.uint64 or sessions.ndim != 1:
            raise ValueError("training sessions are not a vector of uint64 hashes")
        self.pipeline_ = pipeline
        self.bounds_ = DurationBounds.from_dict(self.bounds)
        self.model_ = model
        self.baselines_ = baselines
        self.human_gaps_ = human_gaps
        self.train_sessions_ = sessions
        self.n_train_calls_ = int(n_train_calls)
        self.feature_names_ = list(pipeline.names)
        self.timings_ = timings
        self.card_ = card
        return self

    def _require_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise NotFittedError("this ToolLatencyModel is not fitted: call fit(calls) or ToolLatencyModel.load(path)")

    @property
    def levels_(self) -> tuple[float, ...]:
        self._require_fitted()
        return tuple(self.model_.levels)

    @property
    def version_(self) -> str:
        return self.card_.get("version", "") if hasattr(self, "card_") else ""

    # -- predicting (pure) ----------------------------------------------------------------------
    def features_for(self, calls: pd.DataFrame, progress: bool = False) -> np.ndarray:
        """The feature matrix of calls treated as unseen (each session replayed from empty)."""
        self._require_fitted()
        return self.pipeline_.transform(calls, progress=progress)

    def predict_log(self, calls: pd.DataFrame, X: np.ndarray | None = None, progress: bool = False) -> Prediction:
        """Quantiles in log10 s and p_long for every call; out-of-scope calls get the per-tool median."""
        self._require_fitted()
        if X is None:
            X = self.features_for(calls, progress)
        pred = self.predict_matrix(calls, X)
        outside = ~in_scope(calls, self.tools)
        if outside.any():
            base = self.baselines_["per_tool_median"].predict(calls[outside])
            q, p = pred.quantiles.copy(), pred.p_long.copy()
            q[outside], p[outside] = base.quantiles, base.p_long
            pred = Prediction(pred.levels, q, p)
        return pred

    def predict_matrix(self, calls, X: np.ndarray) -> Prediction:
        """The learned model's prediction from a feature matrix (the Predictor's hot path): the
        explicit durations of the arguments applied (``models.bounds``) and the long-call
        probability made consistent with the quantiles (``units.p_exceeds``). ``calls`` needs
        ``tool_family`` and ``tool_name``."""
        pred = self.model_.predict(calls, X)
        q = pred.quantiles
        lim = self.bounds_.limits(calls["tool_name"], X, self.feature_names_)
        if lim is not None:
            q = self.bounds_.apply(pred.levels, q, *lim)
        return Prediction(pred.levels, q, p_exceeds(pred.levels, to_ms(q), LONG_MS, pred.p_long))


    def predict(self, calls: pd.DataFrame, progress: bool = False) -> pd.DataFrame:
        """``pred_p10_ms`` .. ``pred_p99_ms`` (one per level) and ``pred_p_long``, indexed like ``calls``."""
        import pandas as pd

        pred = self.predict_log(calls, progress=progress)
        out = pd.DataFrame(pred.ms(), columns=prediction_columns(pred.levels), index=calls.index)
        out[P_LONG_COLUMN] = pred.p_long
        return out

    def scored(self, calls: pd.DataFrame, progress: bool = False):
        """The in-scope calls with a known target, their target (ms) and every model's predictions
        on them: ``(calls, y_ms, {name: (Prediction, long_threshold)})`` for ``evaluation.report``."""
        X = self.features_for(calls, progress)
        y = target_ms(calls, self.target)
        keep = in_scope(calls, self.tools) & ~np.isnan(y)
        sub = calls[keep].reset_index(drop=True)
        Xs = X[keep]
        preds = {MODEL: (self.predict_matrix(sub, Xs), self.model_.long_threshold)}
        for name in BASELINE_ORDER:
            b = self.baselines_[name]
            preds[name] = (b.predict(sub, None), b.long_threshold)
        return sub, y[keep], preds

    def seen_sessions(self, calls: pd.DataFrame) -> np.ndarray:
        """True for calls whose session the model trained on."""
        self._require_fitted()
        h = np.array([session_hash(s) for s in calls["session_id"]], dtype=np.uint64)
        return np.isin(h, self.train_sessions_)

    # -- save / load ----------------------------------------------------------------------------
    def save(self, directory: str | Path, info: dict[str, Any] | None = None) -> Path:
        """Write the bundle; ``info`` (metrics, data summary in counts, run id) goes into its card."""
        self._require_fitted()

        def write(tmp: Path) -> dict[str, Any]:
            self.pipeline_.save(tmp)
            np.save(tmp / "sessions.npy", self.train_sessions_, allow_pickle=False)
            return {
                "pipeline": "features.json",
                "sessions": "sessions.npy",
                "model": {"kind": self.model_.kind, "state": self.model_.save(tmp, "model")},
                "baselines": {n: {"kind": b.kind, "state": b.save(tmp, n)} for n, b in self.baselines_.items()},
                "human_gaps": self.human_gaps_,
                "n_train_calls": self.n_train_calls_,
                "feature_names": self.feature_names_,
            }

        summary = {"target": self.target, "tools": self.tools}  # at the card's top, for people reading it
        path, card = bundle_io.write_bundle(Path(directory), self.get_params(), write, {**summary, **(info or {})})
        self.card_ = card
        return path

    @classmethod
    def load(cls, name_or_path: str | Path = "default", embedder: Embedder | None = None) -> "ToolLatencyModel":
        """A saved model: a bundle directory, a name under ``models/``, or ``default`` (shipped)."""
        path, card = bundle_io.open_bundle(name_or_path)
        params = card["params"]
        if not isinstance(params, dict) or set(params) - set(cls.PARAMS):
            raise bundle_io.BundleError(f"{path}: card params are not ToolLatencyModel parameters")
        m = cls(**params, embedder=embedder)
        try:
            _, fcfg, _, _ = m._checked()
            state = card["state"]
            if fcfg.uses_text and fcfg.embedder == "minilm" and m.embedder is None:
                m._embedder()
            pipeline = FeaturePipeline.load(path, m.embedder, target=m.target)
            if list(state["feature_names"]) != pipeline.names:
                raise ValueError("feature names in the card do not match the pipeline")
            m._set_fitted(pipeline, MODELS[state["model"]["kind"]].load(path, "model", state["model"]["state"]),
                          {n: MODELS[b["kind"]].load(path, n, b["state"]) for n, b in state["baselines"].items()},
                          state.get("human_gaps"),
                          np.load(bundle_io.member(path, state["sessions"]), allow_pickle=False),
                          int(state["n_train_calls"]), card.get("timings", {}), card)
        except bundle_io.BundleError:
            raise
        except Exception as e:  # a foreign or damaged bundle: say so, run nothing
            raise bundle_io.BundleError(f"{path}: cannot read bundle contents ({type(e).__name__}: {e})") from None
        return m

    def __repr__(self) -> str:
        fitted = "fitted" if hasattr(self, "model_") else "not fitted"
        return f"ToolLatencyModel(name={self.name!r}, target={self.target!r}, tools={self.tools!r}, {fitted})"


__all__ = ["ToolLatencyModel", "NotFittedError", "in_scope", "human_gap_distribution", "human_waits_by_agent", "MODEL",
           "BASELINE_ORDER"]
