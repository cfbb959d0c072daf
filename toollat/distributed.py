"""Training on a Dask cluster: ``fit_distributed(model, calls, client)`` fits a ``ToolLatencyModel``
from a Dask DataFrame of calls whose partitions hold whole sessions, and sets exactly the fitted
attributes ``ToolLatencyModel.fit`` sets, so the result saves as the same bundle and loads in the
same ``Predictor``.

What runs where, and how each global piece is reduced:

1. Survey (workers, one task per partition): string-hash counts of every vocabulary, the
   session hashes, the human waits (``simulation.build_gaps``, a per-session computation), and,
   when the features use text, the partition's unique texts with their embeddings and, per row,
   its text, history target and out-of-fold fold.
2. Reduce (driver): vocabularies from the summed counts (exact: the same counts ``Vocab.fit``
   sees); the PCA from the union of unique texts and their vectors (exact: the same matrix the
   single process decomposes); the neighbour memory and its out-of-fold variants built from the
   per-row (text, target, fold) triples over the global texts (exact: the same memories the
   single process builds; they are numbers only, so the driver holds them, as the bundle does).
3. Features (workers): the fitted pipeline and the fold memories are broadcast once; each
   partition computes its static, embedding, out-of-fold memory and session-context features
   (context replays each session alone, so whole-session partitions make it exact). Each
   partition is read again for this step rather than held since the survey: the raw calls
   with their argument text are several times the size of their feature rows. The feature
   rows are then shuffled across partitions by a hash of (session, seq), so that every
   worker holds a sample of all sessions (see step 4).
4. Boosters: ``lightgbm.dask`` (``DaskLGBMRegressor`` objective=quantile per level,
   ``DaskLGBMClassifier`` for long calls) on the in-scope feature rows, data-parallel across
   the workers; first once per calibration fold (trained on the other folds' sessions), then on
   all rows. Differences from the single process: LightGBM's histogram bins and bagging draws
   are per worker, and a quantile leaf's value is the mean of the workers' local quantiles
   (not the global one), which is close only when each worker's rows are a sample of all
   sessions — hence the shuffle of step 3.
5. Calibration and baselines (driver): the out-of-fold predictions are gathered as a narrow
   table (target, family, one column per level, p_long) and calibrated by the single-process
   ``_calibrate`` (exact conformal shifts per family and F1 threshold); the baselines are fit on
   a gathered narrow table (tool, family, target) and per-command sums added up per partition.
   These gathered tables are about 50 bytes per in-scope call: 5 GB for 100M calls, the part
   of the driver that grows with the data (the feature matrix stays on the workers).

Only ``model.kind=lgbm`` trains on a cluster; other kinds raise ``ValueError``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from toollat.estimator import MIN_TRAIN_CALLS, ToolLatencyModel, in_scope
from toollat.features.args import CATEGORICAL as ARG_CATS
from toollat.features.calls import calls_from_frame
from toollat.features.memory import MEMORY_FEATURES, NeighborMemory
from toollat.features.pipeline import NAME_CATS, FeaturePipeline, Vocab
from toollat.features.text import code, embed_text
from toollat.models import build, build_baselines
from toollat.models.baselines import command_key
from toollat.models.base import LONG_Y, monotone
from toollat.models.bounds import DurationBounds
from toollat.units import history_ms, target_ms, to_log10_s



# -- input ------------------------------------------------------------------------------------
def session_partitions(calls: pd.DataFrame, client, npartitions: int):
    """A pandas calls table as a Dask DataFrame of ``npartitions`` partitions holding whole
    sessions (by a hash of the session id; rows keep their order), scattered to the workers."""
    import dask.dataframe as dd

    # salted, so partitions do not coincide with the session-hash folds of memory and calibration
    part = np.array([code("partition\x1f" + str(s)) % npartitions for s in calls["session_id"]])
    pieces = [calls[part == i].reset_index(drop=True) for i in range(npartitions)]
    pieces = [p for p in pieces if len(p)]
    futures = client.scatter(pieces)
    return dd.from_delayed(futures, meta=calls.iloc[:0], verify_meta=False)


def read_session_partitions(path: str, npartitions: int):
    """A Parquet dataset (a local path or an object-store URL pyarrow reads; every worker must
    reach it) as a Dask DataFrame whose partitions hold whole sessions, in ``seq`` order."""
    import dask.dataframe as dd

    df = dd.read_parquet(path)
    df = df.shuffle(on="session_id", npartitions=npartitions)
    return df.map_partitions(lambda p: p.sort_values(["session_id", "seq"], kind="stable").reset_index(drop=True))


# -- worker side --------------------------------------------------------------------------------
_EMBEDDERS: dict[Any, Any] = {}


def _worker_embedder(spec):
    """The encoder on a worker: a shipped static embedder as is, or this process's MiniLM
    (``("minilm", cache_dir)``; loaded once per worker process, its disk cache shared)."""
    if not isinstance(spec, tuple):
        return spec
    if spec not in _EMBEDDERS:
        from toollat.features.embed import Embedder

        _EMBEDDERS[spec] = Embedder(Path(spec[1]), threads=1)
    return _EMBEDDERS[spec]


def _survey(part: pd.DataFrame, pipeline: FeaturePipeline, embedder_spec, oof_folds: int) -> dict[str, Any]:
    """Step 1 on a worker: what the driver needs to fit the global parts of the pipeline."""
    from toollat.simulation import build_gaps

    calls = calls_from_frame(part)
    cfg = pipeline.config
    strings = {n: list(col) for n, col in zip(NAME_CATS, zip(*[pipeline._name_strings(x) for x in calls]))}
    if cfg.args:
        parsed = [pipeline._args(x) for x in calls]
        for n in ARG_CATS:
            strings[n] = [p[1].get(n) for p in parsed]
    counts = {n: pd.Series([code(v) for v in vals if v], dtype="uint64").value_counts() for n, vals in strings.items()}
    out: dict[str, Any] = {"counts": counts, "sessions": np.unique(np.array([code(str(s)) for s in pd.unique(part["session_id"])], dtype=np.uint64))}
    if cfg.uses_text:
        texts, idx = np.unique([embed_text(x.tool, x.args) for x in calls], return_inverse=True)
        out["texts"] = texts
        emb = _worker_embedder(embedder_spec)
        out["vecs"] = emb.encode(list(texts))
        if hasattr(emb, "flush"):
            emb.flush()  # new vectors to the shared disk cache now, not at the worker's exit
        out["text_idx"] = idx
        out["y"] = to_log10_s(history_ms(part, pipeline.target))
        out["fold"] = np.array([code(str(s)) % oof_folds for s in part["session_id"]])
    frame = build_gaps(part).frame
    human = frame[frame["kind"] == "human"]
    agents = part.drop_duplicates("session_id").set_index("session_id")["agent"]
    out["human"] = pd.DataFrame({"gap_s": human["gap_s"].to_numpy(dtype=np.float64),
                                 "agent": human["session_id"].map(agents).to_numpy()})
    return out


def _featurize(part: pd.DataFrame, pipeline: FeaturePipeline, embedder_spec, fold_memories, tools,
               target: str, cal_folds: int) -> pd.DataFrame:
    """Step 3 on a worker: the partition's feature rows (memory out of fold), in-scope rows with
    a known target only, with the per-row columns calibration and the baselines need."""
    cfg = pipeline.config
    pipeline.embedder = _worker_embedder(embedder_spec) if cfg.uses_text else None
    calls = calls_from_frame(part)
    parsed = [pipeline._args(c) for c in calls]
    blocks = [np.array([pipeline._encode_static(x, *p) for x, p in zip(calls, parsed)], dtype=np.float64).reshape(len(calls), -1)]
    if cfg.uses_text:
        texts, text_idx = np.unique([embed_text(x.tool, x.args) for x in calls], return_inverse=True)
        vecs = pipeline._embed(list(texts), False)
        if cfg.embeddings:
            blocks.append(pipeline._project(vecs, cfg.pca_dims)[text_idx])
        if cfg.memory:
            mvecs = pipeline._memory_vectors(vecs)
            fold = np.array([code(str(s)) % cfg.oof_folds for s in part["session_id"]])
            mem = np.full((len(calls), len(MEMORY_FEATURES)), np.nan)
            for f, memory in enumerate(fold_memories):
                inside = fold == f
                if inside.any():
                    uniq, inv = np.unique(text_idx[inside], return_inverse=True)
                    mem[inside] = memory.query(mvecs[uniq])[inv]
            blocks.append(mem)
    if cfg.context or cfg.project:
        blocks += pipeline._replay(part, calls, parsed, pipeline._expected(blocks))
    X = np.hstack(blocks).astype(np.float32)
    y = target_ms(part, target)
    rows = in_scope(part, tools) & ~np.isnan(y)
    out = pd.DataFrame(X[rows], columns=pipeline.names)
    sub = part[rows]
    out["__y"] = to_log10_s(y[rows])
    out["__family"] = sub["tool_family"].astype(str).to_numpy()
    out["__tool"] = sub["tool_name"].astype(str).to_numpy()
    out["__cmd"] = np.array([command_key(t, a) for t, a in zip(sub["tool_name"], sub["args"])], dtype=np.uint64)
    out["__cfold"] = np.array([code(str(s)) % max(cal_folds, 1) for s in sub["session_id"]], dtype=np.int64)
    out["__lane"] = np.array([code(f"lane\x1f{s}\x1f{q}") for s, q in zip(sub["session_id"], sub["seq"])], dtype=np.uint64)
    return out


def _other_folds(feat: pd.DataFrame, fold: int) -> pd.DataFrame:
    return feat[feat["__cfold"] != fold]


def _oof_predict(feat: pd.DataFrame, names: list[str], fold: int, heads, clf) -> pd.DataFrame:
    """Out-of-fold predictions of one calibration fold's rows in a partition (narrow)."""
    rows = feat[feat["__cfold"] == fold]
    X = rows[names].to_numpy()
    q = monotone(np.column_stack([h.predict(X) for h in heads])) if len(rows) else np.zeros((0, len(heads)))
    out = pd.DataFrame(q, columns=[f"q{j}" for j in range(len(heads))])
    out["p"] = clf.predict(X) if len(rows) else np.zeros(0)
    out["y"] = rows["__y"].to_numpy()
    out["family"] = rows["__family"].to_numpy()
    return out


def _narrow(feat: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the baselines need of a partition: (tool, family, target) rows and per-command sums."""
    base = pd.DataFrame({"tool_name": feat["__tool"].to_numpy(), "tool_family": feat["__family"].to_numpy(),
                         "y": feat["__y"].to_numpy()})
    sums = pd.DataFrame({"key": feat["__cmd"].to_numpy(), "s": 10.0 ** feat["__y"].to_numpy()}).groupby("key")["s"].agg(["count", "sum"])
    return base, sums


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# -- driver -------------------------------------------------------------------------------------
def _vocab(counts: list[pd.Series], min_count: int, max_size: int) -> Vocab:
    """``Vocab.fit`` from per-partition hash counts (most frequent first, as value_counts orders)."""
    total = pd.concat(counts).groupby(level=0).sum() if counts else pd.Series(dtype="int64")
    total = total.sort_values(ascending=False, kind="stable")
    keep = total[total >= min_count].index[:max_size]
    return Vocab([int(h) for h in keep])


def _human_gaps(human: pd.DataFrame, levels, min_n: int = 20) -> dict[str, Any] | None:
    """``estimator.human_gap_distribution`` from the gathered human waits."""
    if len(human) < min_n:
        return None
    out = {"levels": list(levels), "n": int(len(human)),
           "ms": {"*": [float(v) * 1000.0 for v in np.quantile(human["gap_s"], levels)]}}
    for a, g in human.groupby("agent"):
        if len(g) >= min_n:
            out["ms"][str(a)] = [float(v) * 1000.0 for v in np.quantile(g["gap_s"], levels)]
    return out


def _lgbm_fit(client, F, names: list[str], levels, head, threads: int, seed: int, categorical: list[int]):
    """Quantile heads and the long classifier with ``lightgbm.dask``; local boosters back."""
    from lightgbm.dask import DaskLGBMClassifier, DaskLGBMRegressor

    common = {"verbose": -1, "n_jobs": threads, "random_state": seed, "client": client}
    X, y = F[names], F["__y"]
    heads = []
    for level in levels:
        m = DaskLGBMRegressor(objective="quantile", alpha=level, **head.params, **common)
        m.fit(X, y, categorical_feature=categorical)
        heads.append(m.booster_)
    c = DaskLGBMClassifier(**head.classifier, **common)
    c.fit(X, (y >= LONG_Y).astype(int), categorical_feature=categorical)
    return heads, c.booster_


def fit_distributed(model: ToolLatencyModel, calls, client, progress: bool = False) -> ToolLatencyModel:
    """Fit ``model`` from ``calls`` (a Dask DataFrame, whole sessions per partition) on
    ``client``'s workers; sets the attributes ``ToolLatencyModel.fit`` sets and returns it."""
    import dask
    import dask.dataframe as dd
    from distributed import futures_of, wait

    levels, fcfg, spec, _ = model._checked()
    if spec.get("kind") != "lgbm":
        raise ValueError(f"cluster training supports model.kind=lgbm, not {spec.get('kind')!r}")
    started = time.perf_counter()
    embedder = model._embedder(fcfg) if fcfg.uses_text else None
    embedder_spec = (("minilm", str(embedder.cache_dir.parent.parent)) if fcfg.embedder == "minilm" else embedder) if embedder is not None else None
    pipeline = FeaturePipeline(fcfg, None, target=model.target)
    head = build(spec, levels, threads=model.threads, seed=model.seed)

    if hasattr(embedder, "flush"):
        embedder.flush()  # what this process encoded reaches the disk cache the workers read
    # The partitions are read twice (survey, then features) rather than held: the raw calls,
    # argument text included, are several times the size of their feature rows.
    parts = calls.to_delayed()
    spec_f = client.scatter(embedder_spec, broadcast=True) if embedder_spec is not None and not isinstance(embedder_spec, tuple) else embedder_spec
    pipe_f = client.scatter(pipeline, broadcast=True)
    surveys = client.gather(client.compute([dask.delayed(_survey)(p, pipe_f, spec_f, fcfg.oof_folds) for p in parts]))

    # -- reduce the global parts of the pipeline ---------------------------------------------
    cats = list(NAME_CATS) + (list(ARG_CATS) if fcfg.args else [])
    pipeline.vocabs = {n: _vocab([s["counts"][n] for s in surveys], fcfg.min_category_count, fcfg.max_categories) for n in cats}
    fold_memories: list[NeighborMemory] = []
    if fcfg.uses_text:
        texts = np.unique(np.concatenate([s["texts"] for s in surveys]))
        vecs = np.zeros((len(texts), surveys[0]["vecs"].shape[1]), dtype=surveys[0]["vecs"].dtype)
        text_idx, y_all, fold = [], [], []
        for s in surveys:
            g = np.searchsorted(texts, s["texts"])
            vecs[g] = s["vecs"]
            text_idx.append(g[s["text_idx"]])
            y_all.append(s["y"])
            fold.append(s["fold"])
        text_idx, y_all, fold = np.concatenate(text_idx), np.concatenate(y_all), np.concatenate(fold)
        pipeline.pca_mean = vecs.mean(axis=0)
        _, _, vt = np.linalg.svd(vecs - pipeline.pca_mean, full_matrices=False)
        pipeline.pca_components = vt[: max(fcfg.pca_dims, fcfg.memory_dims)].astype(np.float32)
        if fcfg.memory:
            mvecs = pipeline._memory_vectors(vecs)
            pipeline.memory = NeighborMemory.build(mvecs, text_idx, y_all, fcfg.knn_k, fcfg.knn_temperature)
            for f in range(fcfg.oof_folds):
                out = fold != f
                fold_memories.append(NeighborMemory.build(mvecs, text_idx[out], y_all[out], fcfg.knn_k, fcfg.knn_temperature))
        del vecs, text_idx, y_all, fold
    sessions = np.unique(np.concatenate([s["sessions"] for s in surveys]))
    human = pd.concat([s["human"] for s in surveys], ignore_index=True)
    del surveys

    # -- features on the workers -----------------------------------------------------------------
    pipe_f = client.scatter(pipeline, broadcast=True)
    mem_f = client.scatter(fold_memories, broadcast=True) if fold_memories else []
    feats = client.compute([dask.delayed(_featurize)(p, pipe_f, spec_f, mem_f, model.tools, model.target,
                                                     head.calibration_folds) for p in parts])
    lengths = client.gather(client.map(len, feats))
    del parts
    feats = [f for f, n in zip(feats, lengths) if n]
    n_rows = int(sum(lengths))
    seconds_features = time.perf_counter() - started
    if n_rows < MIN_TRAIN_CALLS:
        raise ValueError(f"only {n_rows} training calls in scope {model.tools} with a known "
                         f"{model.target} latency: too few to train on (at least {MIN_TRAIN_CALLS})")
    names = list(pipeline.names)
    meta = pd.DataFrame({**{n: pd.Series(dtype="float32") for n in names}, "__y": pd.Series(dtype="float64"),
                         "__family": pd.Series(dtype="object"), "__tool": pd.Series(dtype="object"),
                         "__cmd": pd.Series(dtype="uint64"), "__cfold": pd.Series(dtype="int64"),
                         "__lane": pd.Series(dtype="uint64")})
    # Whole sessions per partition were needed for the features, not for the boosters: LightGBM's
    # data-parallel quantile objective sets each leaf to the plain mean of the workers' local
    # quantiles, so workers holding different sessions (a worker with 2 of a leaf's rows weighs as
    # much as one with 40) gave leaves off the global quantile (0.006-0.010 mae worse than one
    # process on the test slice). Rows spread by a hash of (session, seq) make every worker's
    # share a sample of all sessions, and the local quantiles agree.
    F = dd.from_delayed(feats, meta=meta, verify_meta=False).shuffle("__lane", npartitions=len(feats)).persist()
    wait(F)
    del feats
    feats = futures_of(F)
    lengths = client.gather(client.map(len, feats))
    feats = [f for f, n in zip(feats, lengths) if n]
    F = dd.from_delayed(feats, meta=meta, verify_meta=False)

    # -- boosters, calibration, baselines ------------------------------------------------------
    t = time.perf_counter()
    head.categorical = [i for i, n in enumerate(names) if n.startswith("c_")]
    if head.calibration_folds >= 2:
        oof = []
        for f in range(head.calibration_folds):
            # the other folds' rows, partition by partition; empty ones dropped (lightgbm.dask
            # refuses a worker whose parts are all empty)
            outside = client.map(_other_folds, feats, fold=f, pure=False)
            sizes = client.gather(client.map(len, outside))
            train_f = dd.from_delayed([o for o, n in zip(outside, sizes) if n], meta=meta, verify_meta=False)
            heads, clf = _lgbm_fit(client, train_f, names, levels, head, model.threads, model.seed, head.categorical)
            oof += client.gather(client.map(_oof_predict, feats, names=names, fold=f, heads=heads, clf=clf, pure=False))
        o = pd.concat(oof, ignore_index=True)
        head._calibrate(o[[f"q{j}" for j in range(len(levels))]].to_numpy(), o["p"].to_numpy(), o["y"].to_numpy(),
                        o["family"].to_numpy())
        del o, oof
    head.heads, head.long = _lgbm_fit(client, F, names, levels, head, model.threads, model.seed, head.categorical)
    narrow = client.gather(client.map(_narrow, feats, pure=False))
    base = pd.concat([b for b, _ in narrow], ignore_index=True)
    sums = pd.concat([s for _, s in narrow]).groupby(level=0).sum()
    baselines = build_baselines(levels, model.target)
    for name, b in baselines.items():
        b.fit(base, None, base["y"].to_numpy(), names) if name != "per_command_mean" else b.tools.fit(base, None, base["y"].to_numpy(), names)
    baselines["per_command_mean"].sums = {int(k): [float(r["count"]), float(r["sum"])] for k, r in sums.iterrows()}
    del feats, F

    if embedder is not None:
        pipeline.embedder = embedder
    model.pipeline_ = pipeline
    model.bounds_ = DurationBounds.from_dict(model.bounds)
    model.model_ = head
    model.baselines_ = baselines
    model.human_gaps_ = _human_gaps(human, levels)
    model.train_sessions_ = sessions
    model.n_train_calls_ = n_rows
    model.feature_names_ = names
    model.timings_ = {"seconds_features": seconds_features, "seconds_fit": time.perf_counter() - t}
    model.card_ = {}
    return model


def cluster_client(cluster: dict[str, Any]):
    """A ``distributed.Client`` for a ``conf/cluster/dask.yaml`` group: its scheduler address, or
    a LocalCluster of ``workers`` processes for ``address: local``."""
    from toollat.ingest.cluster import client_for

    address = str(cluster.get("address") or "local")
    return client_for(f"local:{int(cluster.get('workers', 2))}" if address == "local" else address)


def fit_on_cluster(model: ToolLatencyModel, calls: pd.DataFrame, cluster: dict[str, Any]) -> ToolLatencyModel:
    """``fit_distributed`` for a pandas table the driver already holds (what ``train.py`` reads):
    scattered to the workers as whole-session partitions, fitted there, the cluster closed after."""
    with cluster_client(cluster) as client:
        n = max(len(client.nthreads()), 1) * int(cluster.get("partitions_per_worker", 4))
        fit_distributed(model, session_partitions(calls, client, n), client)
        if getattr(client, "cluster", None) is not None:
            client.cluster.close()
    return model


def held_out_on_cluster(df: pd.DataFrame, make_model, test_fraction: float, seed: int, cluster: dict[str, Any]):
    """``evaluation.evaluate.held_out`` with the fit on a cluster: the same session split, the
    held-out sessions scored in this process. Returns ``(model, report, (calls, y_ms, preds))``."""
    from toollat.evaluation.evaluate import report
    from toollat.evaluation.splits import session_test_mask

    test = session_test_mask(df["session_id"], test_fraction, seed)
    model = fit_on_cluster(make_model(), df[~test].reset_index(drop=True), cluster)
    scored = model.scored(df[test].reset_index(drop=True))
    return model, report(*scored), scored


def worker_peaks(client) -> list[int]:
    """Every worker process's peak RSS in bytes (for reports and the scale benchmark)."""
    return sorted(client.run(_peak_rss).values())


__all__ = ["fit_distributed", "fit_on_cluster", "held_out_on_cluster", "cluster_client", "session_partitions", "read_session_partitions", "worker_peaks"]
