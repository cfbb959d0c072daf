"""Where a fit runs. ``ToolLatencyModel.fit(calls, executor=...)`` is one plan (survey each
partition of the calls, merge, finalize the feature pipeline, featurize each partition, boost),
written once against this small interface; an executor only says where each step runs and where
the rows are held:

- ``LocalExecutor`` (the default): this process, the whole table as one partition.
- ``toollat.distributed.DaskExecutor``: a Dask cluster's workers; LightGBM boosts with its own
  Dask estimators, which end in ordinary local boosters.

The interface: ``partition(calls, keys)`` (partitions holding whole groups of ``keys(calls)``),
``share(obj)`` (an object every step reads), ``map(fn, parts, *args, **kw)`` (``fn`` on each
partition, results left where they ran), ``gather(results)``, ``training_data(rows, names)``
(the ``models.base.TrainingData`` of the rows), and ``remote`` (steps run in other processes).
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from toollat.models.base import LocalData, Rows


class LocalExecutor:
    """Every step in this process, on the whole table."""

    remote = False

    def partition(self, calls: pd.DataFrame, keys: Callable[[pd.DataFrame], np.ndarray]) -> list[pd.DataFrame]:
        return [calls]

    def share(self, obj: Any) -> Any:
        return obj

    def map(self, fn: Callable, parts: list, *args, **kwargs) -> list:
        return [fn(p, *args, **kwargs) for p in parts]

    def gather(self, results: list) -> list:
        return list(results)

    def training_data(self, rows: list[Rows], names: list[str]) -> LocalData:
        return LocalData(rows[0] if len(rows) == 1 else Rows.concat(rows), names)


__all__ = ["LocalExecutor"]
