"""``ToolLatencyModel``: the one trained artifact. Training, ``evaluate``, ``simulate``,
``replay`` and the ``Predictor`` all use it.

scikit-learn style:

```python
from toollat import ToolLatencyModel
m = ToolLatencyModel(target="wall", tools={"families": ["shell", "search"]})   # hyper-parameters only
m.fit(train_calls)                  # learns the feature pipeline, the model, the baselines, human waits
m.predict(test_calls)               # pure: a DataFrame pred_p10_ms .. pred_p99_ms, pred_p_long
m.save("models/mine"); ToolLatencyModel.load("models/mine")
```

The constructor stores its arguments untouched (``get_params``); everything ``fit`` learns ends
in ``_``. ``predict`` treats every call as unseen (each session replayed from an empty history)
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
import math
import time
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from toollat import bundle as bundle_io
from toollat.features.embed import Embedder
from toollat.features.pipeline import FeatureConfig, FeaturePipeline
from toollat.features.text import code
from toollat.hints import HintCosts
from toollat.models import MODELS, LatencyModel, Prediction, build, build_baselines
from toollat.models.bounds import DurationBounds
from toollat.online import OnlineConfig
from toollat.units import (LEVELS, LONG_MS, P_LONG_COLUMN, TARGETS, check_levels, history_ms, p_exceeds,
                           prediction_columns, target_ms, to_log10_s, to_ms)

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


def human_gap_distribution(df: pd.DataFrame, levels=LEVELS, min_n: int = 20) -> dict[str, Any] | None:
    """Quantiles (ms) of the waits before human turns (``simulation.gaps`` definition), overall
    and per agent with at least ``min_n`` of them; None if the data has fewer than ``min_n``."""
    from toollat.simulation import build_gaps

    frame = build_gaps(df).frame
    human = frame[frame["kind"] == "human"]
    if len(human) < min_n:
        return None
    agents = df.drop_duplicates("session_id").set_index("session_id")["agent"]
    agent = human["session_id"].map(agents)
    out = {"levels": list(levels), "n": int(len(human)),
           "ms": {"*": [float(v) * 1000.0 for v in np.quantile(human["gap_s"], levels)]}}
    for a, g in human.groupby(agent):
        if len(g) >= min_n:
            out["ms"][str(a)] = [float(v) * 1000.0 for v in np.quantile(g["gap_s"], levels)]
    return out


def session_hashes(sessions) -> np.ndarray:
    """63-bit hashes of session ids (what a bundle keeps of its training sessions)."""
    return np.unique(np.array([code(s) for s in {str(s) for s in sessions}], dtype=np.uint64))


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
        """Validated hyper-parameters (scikit-learn validates at fit, not in the constructor)."""
        if self.target not in TARGETS:
            raise ValueError(f"target must be one of {TARGETS}, not {self.target!r}")
        levels = check_levels(self.levels)
        feats = dict(self.features or {})
        known = {f.name for f in fields(FeatureConfig)}
        unknown = sorted(set(feats) - known)
        if unknown:
            raise ValueError(f"unknown feature settings {unknown}; known: {sorted(known)}")
        spec = dict(self.model or DEFAULT_MODEL)
        if feats.get("embedder", "minilm") not in ("minilm", "static"):
            raise ValueError(f"features.embedder must be minilm or static, not {feats.get('embedder')!r}")
        if spec.get("kind") not in MODELS:
            raise ValueError(f"unknown model kind {spec.get('kind')!r}; known: {sorted(MODELS)}")
        if self.tools is not None and (not isinstance(self.tools, dict) or set(self.tools) - {"families", "names"}):
            raise ValueError("tools must be {'families': [...] | null, 'names': [...] | null} or null")
        hints = dict(self.hints or {})
        bad = {k: v for k, v in hints.items() if not isinstance(v, (int, float)) or not math.isfinite(v)}
        if bad:
            raise ValueError(f"hint costs must be finite numbers; got {bad}")
        try:
            DurationBounds.from_dict(self.bounds)
            OnlineConfig.from_dict(self.online)
        except TypeError as e:
            raise ValueError(f"bounds/online settings: {e}") from None
        return levels, FeatureConfig(**feats), spec, HintCosts(**hints)

    @property
    def hint_costs(self) -> HintCosts:
        return HintCosts(**(self.hints or {}))

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
    def fit(self, calls: pd.DataFrame, progress: bool = False) -> "ToolLatencyModel":
        """Learn from a canonical calls table. Features see every call (the session context
        needs them); the model and baselines learn the in-scope calls with a known target."""
        from toollat.extras import require

        require("data", "ToolLatencyModel.fit")
        levels, fcfg, spec, _ = self._checked()
        started = time.perf_counter()
        pipeline = FeaturePipeline(fcfg, self._embedder(fcfg) if fcfg.uses_text else None, target=self.target)
        X = pipeline.fit_transform(calls, to_log10_s(history_ms(calls, self.target)), progress=progress)
        seconds_features = time.perf_counter() - started
        y = target_ms(calls, self.target)
        rows = in_scope(calls, self.tools) & ~np.isnan(y)
        if rows.sum() < MIN_TRAIN_CALLS:
            raise ValueError(f"only {int(rows.sum())} training calls in scope {self.tools} with a known "
                             f"{self.target} latency: too few to train on (at least {MIN_TRAIN_CALLS})")
        sub, Xs, ys = calls[rows].reset_index(drop=True), X[rows], to_log10_s(y[rows])
        t = time.perf_counter()
        self.pipeline_ = pipeline
        self.bounds_ = DurationBounds.from_dict(self.bounds)
        self.model_: LatencyModel = build(spec, levels, threads=self.threads, seed=self.seed).fit(sub, Xs, ys, pipeline.names)
        self.baselines_: dict[str, LatencyModel] = {n: b.fit(sub, None, ys, pipeline.names)
                                                    for n, b in build_baselines(levels, self.target).items()}
        self.human_gaps_ = human_gap_distribution(calls, levels)
        self.train_sessions_ = session_hashes(calls["session_id"])
        self.n_train_calls_ = int(rows.sum())
        self.feature_names_ = list(pipeline.names)
        self.timings_ = {"seconds_features": seconds_features, "seconds_fit": time.perf_counter() - t}
        self.card_: dict[str, Any] = {}
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
        h = np.array([code(str(s)) for s in calls["session_id"]], dtype=np.uint64)
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
            levels, fcfg, _, _ = m._checked()
            state = card["state"]
            if fcfg.uses_text and fcfg.embedder == "minilm" and m.embedder is None:
                m._embedder()
            m.pipeline_ = FeaturePipeline.load(path, m.embedder, target=m.target)
            m.bounds_ = DurationBounds.from_dict(m.bounds)
            m.model_ = MODELS[state["model"]["kind"]].load(path, "model", state["model"]["state"])
            m.baselines_ = {n: MODELS[b["kind"]].load(path, n, b["state"]) for n, b in state["baselines"].items()}
            if set(m.baselines_) != set(BASELINE_ORDER):
                raise ValueError(f"baselines {sorted(m.baselines_)} (expected {sorted(BASELINE_ORDER)})")
            m.train_sessions_ = np.load(bundle_io.member(path, state["sessions"]), allow_pickle=False)
            if m.train_sessions_.dtype != np.uint64 or m.train_sessions_.ndim != 1:
                raise ValueError("sessions.npy is not a vector of uint64 hashes")
            m.human_gaps_ = state.get("human_gaps")
            m.n_train_calls_ = int(state["n_train_calls"])
            m.feature_names_ = list(state["feature_names"])
            if m.feature_names_ != m.pipeline_.names:
                raise ValueError("feature names in the card do not match the pipeline")
            m.timings_ = card.get("timings", {})
        except bundle_io.BundleError:
            raise
        except Exception as e:  # a foreign or damaged bundle: say so, run nothing
            raise bundle_io.BundleError(f"{path}: cannot read bundle contents ({type(e).__name__}: {e})") from None
        m.card_ = card
        return m

    def __repr__(self) -> str:
        fitted = "fitted" if hasattr(self, "model_") else "not fitted"
        return f"ToolLatencyModel(name={self.name!r}, target={self.target!r}, tools={self.tools!r}, {fitted})"


__all__ = ["ToolLatencyModel", "NotFittedError", "in_scope", "human_gap_distribution", "MODEL", "BASELINE_ORDER"]
