"""The Dask executor: ``ToolLatencyModel.fit(calls, executor=DaskExecutor(client))`` runs the one
fit plan (``toollat.executor``) on a Dask cluster's workers, and the result is the model a local
fit gives (the same bundle, the same ``Predictor``).

What runs where:

1. Partitions: hold whole groups of the pipeline's partition keys (sessions; projects with
   ``features.project``). A pandas table (what ``train.py`` reads) is split by a salted hash of
   the keys on the driver and scattered; a Dask DataFrame (``dd.read_parquet`` of a dataset every
   worker reaches: a shared filesystem or an object-store URL pyarrow reads) is shuffled by the
   keys on the workers and each partition put back in table order (session, ``seq``).
   Partitions are read twice (survey, then features) rather than held: the raw calls, argument
   text included, are several times the size of their feature rows.
2. Survey and features on the workers, the pipeline's global parts finalized on the driver
   (``features.pipeline``): both exact, so the feature rows equal the local ones row for row.
3. Boosters: ``lightgbm.dask`` (``DaskLGBMRegressor``, ``DaskLGBMClassifier``), data-parallel
   across the workers, end in local boosters. LightGBM's histogram bins and bagging draws are per
   worker, and its data-parallel quantile objective sets each leaf to the plain mean of the
   workers' local quantiles, not the global one: workers holding different sessions (a worker
   with 2 of a leaf's rows weighs as much as one with 40) gave leaves off the global quantile
   (0.006-0.010 mae worse than one process on the test slice). So the feature rows are shuffled
   across partitions by a hash of (session, seq) before boosting: every worker's share is then a
   sample of all sessions, and the local quantiles agree.
4. Calibration and baselines (driver): the out-of-fold predictions and the baselines' narrow
   table (tool, family, command, target) are gathered, about 50 bytes per in-scope call: the
   part of the driver that grows with the data (the feature matrix stays on the workers).

Only ``model.kind=lgbm`` trains on a cluster (``matrix`` raises for the others).
"""
from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from toollat.core.hashing import session_fold
from toollat.models.base import (BoosterSpec, Rows, categorical_columns, fold_of, predict_boosters)

_ROW_COLUMNS = ("__y", "__family", "__tool", "__command", "__session", "__row")


class DaskExecutor:
    """Steps on ``client``'s workers; ``partitions_per_worker`` partitions of a pandas table per
    worker (several, so one big one does not leave the others idle)."""

    remote = True

    def __init__(self, client, partitions_per_worker: int = 4):
        self.client = client
        self.partitions_per_worker = partitions_per_worker

    def partition(self, calls, keys: Callable[[pd.DataFrame], np.ndarray]) -> list:
        if not isinstance(calls, pd.DataFrame):   # a Dask DataFrame (e.g. dd.read_parquet): shuffled on the workers
            # a call's key depends on its session alone: worked out from the distinct sessions
            # (with their projects and sources), a small table, then mapped onto every call
            cols = [c for c in ("session_id", "project", "source") if c in calls.columns]
            links = calls[cols].drop_duplicates().compute()
            key_of = dict(zip(links["session_id"].tolist(), keys(links).tolist()))
            keyed = calls.assign(__key=calls["session_id"].map(key_of, meta=("session_id", object)))
            whole = keyed.shuffle("__key", npartitions=calls.npartitions).map_partitions(_in_table_order)
            return whole.to_delayed()
        n = max(len(self.client.nthreads()), 1) * self.partitions_per_worker
        # salted, so partitions do not coincide with the session folds of memory and calibration
        part = session_fold(keys(calls), n, salt="partition")
        pieces = [calls[part == i].reset_index(drop=True) for i in range(n)]
        return self.client.scatter([p for p in pieces if len(p)])

    def share(self, obj: Any):
        return self.client.scatter(obj, broadcast=True, hash=False)   # a new key: never an earlier state

    def map(self, fn: Callable, parts: list, *args, **kwargs) -> list:
        import dask

        return self.client.compute([dask.delayed(fn, pure=False)(p, *args, **kwargs) for p in parts])

    def gather(self, results: list) -> list:
        return self.client.gather(results)

    def training_data(self, rows: list, names: list[str]) -> "DaskData":
        return DaskData(self.client, rows, names)


def _in_table_order(part: pd.DataFrame) -> pd.DataFrame:
    return part.drop(columns="__key").sort_values(["session_id", "seq"], kind="stable").reset_index(drop=True)


# -- training rows on the workers ----------------------------------------------------------------
def _frame(rows: Rows, names: list[str]) -> pd.DataFrame:
    extra = pd.DataFrame(dict(zip(_ROW_COLUMNS, (rows.y, rows.tool_family, rows.tool_name, rows.command, rows.session,
                                                 rows.row))))
    return pd.concat([pd.DataFrame(rows.X, columns=names), extra], axis=1)


def _meta(names: list[str]) -> pd.DataFrame:
    return _frame(Rows.empty(len(names)), names)   # the features as one float32 block, as on the workers


def _outside(frame: pd.DataFrame, fold: int, k: int) -> pd.DataFrame:
    return frame[fold_of(frame["__session"].to_numpy(dtype=np.uint64), k) != fold]


def _fold_sizes(frame: pd.DataFrame, k: int) -> np.ndarray:
    return np.bincount(fold_of(frame["__session"].to_numpy(dtype=np.uint64), k), minlength=k)


def _predict_fold(frame: pd.DataFrame, boosters: list, names: list[str], fold: int, k: int):
    inside = frame[fold_of(frame["__session"].to_numpy(dtype=np.uint64), k) == fold]
    return (predict_boosters(boosters, inside[names].to_numpy()), inside["__y"].to_numpy(),
            inside["__family"].to_numpy(dtype=object), inside["__row"].to_numpy(dtype=np.uint64))


def _narrow(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"tool_name": frame["__tool"].to_numpy(dtype=object),
                         "tool_family": frame["__family"].to_numpy(dtype=object),
                         "command": frame["__command"].to_numpy(dtype=np.uint64), "y": frame["__y"].to_numpy()})


class DaskData:
    """Training rows held on the workers (``models.base.TrainingData``), shuffled by row hash."""

    def __init__(self, client, rows: list, names: list[str]):
        import dask.dataframe as dd
        from distributed import futures_of, wait

        self.client = client
        self.names = list(names)
        frames = client.map(_frame, rows, names=self.names, pure=False)
        lengths = client.gather(client.map(len, frames))
        frames = [f for f, n in zip(frames, lengths) if n]
        self.n = int(sum(lengths))
        if not frames:
            self.parts = []
            return
        meta = _meta(self.names)
        shuffled = dd.from_delayed(frames, meta=meta, verify_meta=False).shuffle("__row", npartitions=len(frames)).persist()
        wait(shuffled)
        parts = futures_of(shuffled)
        lengths = client.gather(client.map(len, parts))
        self.parts = [p for p, n in zip(parts, lengths) if n]   # lightgbm.dask refuses a worker with only empty parts

    @property
    def categorical(self) -> list[int]:
        return categorical_columns(self.names)

    def _frame(self, parts: list):
        import dask.dataframe as dd

        return dd.from_delayed(parts, meta=_meta(self.names), verify_meta=False)

    def fold_sizes(self, k: int) -> np.ndarray:
        sizes = self.client.gather(self.client.map(_fold_sizes, self.parts, k=k, pure=False))
        return np.sum(sizes, axis=0) if sizes else np.zeros(k, dtype=np.int64)

    def boost(self, specs: list[BoosterSpec], exclude_fold: tuple[int, int] | None = None) -> list:
        from lightgbm.dask import DaskLGBMClassifier, DaskLGBMRegressor

        parts = self.parts
        if exclude_fold is not None:
            outside = self.client.map(_outside, parts, fold=exclude_fold[0], k=exclude_fold[1], pure=False)
            sizes = self.client.gather(self.client.map(len, outside))
            parts = [o for o, n in zip(outside, sizes) if n]
        F = self._frame(parts)
        X, y = F[self.names], F["__y"]
        out = []
        for spec in specs:
            if spec.kind == "regressor":
                m = DaskLGBMRegressor(client=self.client, **spec.params)
                m.fit(X, y, categorical_feature=self.categorical)
            else:
                m = DaskLGBMClassifier(client=self.client, **spec.params)
                m.fit(X, (y >= spec.threshold).astype(int), categorical_feature=self.categorical)
            out.append(m.booster_)
        return out

    def predict_fold(self, boosters: list, fold: int, k: int):
        parts = self.client.gather(self.client.map(_predict_fold, self.parts, boosters=boosters, names=self.names,
                                                   fold=fold, k=k, pure=False))
        return tuple(np.concatenate(x) for x in zip(*parts))

    def narrow(self) -> pd.DataFrame:
        return pd.concat(self.client.gather(self.client.map(_narrow, self.parts, pure=False)), ignore_index=True)

    def matrix(self):
        raise ValueError("this model kind trains in one process only: on a cluster, model.kind=lgbm")

    def collect(self) -> Rows:
        """Every row gathered into this process (small data: tests compare executors with it)."""
        frames = self.client.gather(self.parts)
        if not frames:
            return Rows.empty(len(self.names))
        f = pd.concat(frames, ignore_index=True)
        return Rows(f[self.names].to_numpy(dtype=np.float32), f["__y"].to_numpy(), f["__tool"].to_numpy(dtype=object),
                    f["__family"].to_numpy(dtype=object), f["__command"].to_numpy(dtype=np.uint64),
                    f["__session"].to_numpy(dtype=np.uint64), f["__row"].to_numpy(dtype=np.uint64))


# -- clusters --------------------------------------------------------------------------------------
@contextmanager
def cluster_executor(cluster: dict[str, Any]):
    """A ``DaskExecutor`` for a ``conf/cluster/dask.yaml`` group: its scheduler address, or a
    LocalCluster of ``workers`` processes for ``address: local`` (closed after)."""
    from toollat.ingest.cluster import client_for

    address = str(cluster["address"])
    with client_for(f"local:{int(cluster['workers'])}" if address == "local" else address) as client:
        try:
            yield DaskExecutor(client, int(cluster["partitions_per_worker"]))
        finally:
            if getattr(client, "cluster", None) is not None:
                client.cluster.close()


def _peak_rss() -> int:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker_peaks(client) -> list[int]:
    """Every worker process's peak RSS in bytes (for reports and the scale benchmark)."""
    return sorted(client.run(_peak_rss).values())


__all__ = ["DaskExecutor", "DaskData", "cluster_executor", "worker_peaks"]
