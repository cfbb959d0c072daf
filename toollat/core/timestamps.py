"""Timestamps: the one way toollat reads a time, as epoch milliseconds (UTC).

- ``parse_ts_ms(text)``: an ISO-8601 string (``...Z`` or with an offset; a naive one is UTC, as
  logs write UTC) -> epoch ms, None if unusable. Ingest reads every log timestamp with it.
- ``to_epoch_ms(value)``: one value a caller may send (a number of ms, an ISO string, a
  ``datetime`` / ``pandas.Timestamp``) -> epoch ms, None if missing or unusable.
- ``epoch_ms(column)``: a datetime column of the canonical table (any unit, tz-aware or naive
  UTC) -> float epoch ms per row, NaN where missing.

Serving needs numpy alone: pandas is imported where a table or a pandas value is read.
"""
from __future__ import annotations

import math
import numbers
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd


def parse_ts_ms(value: Any) -> int | None:
    """ISO-8601 timestamp (``...Z`` or with offset) -> epoch milliseconds; None if unusable."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:  # logs write UTC; a naive stamp is taken as UTC
        dt = dt.replace(tzinfo=timezone.utc)
    return round(dt.timestamp() * 1000)


def to_epoch_ms(v: Any) -> float | None:
    """Epoch ms from a number (ms), an ISO string, or a pandas/py datetime; None if unusable."""
    if v is None:
        return None
    if isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)):
        return float(v) if math.isfinite(v) else None
    if isinstance(v, str):
        ms = parse_ts_ms(v)
        return float(ms) if ms is not None else None
    import pandas as pd  # a datetime object from a Python caller: pandas reads every kind exactly

    try:
        ts = pd.Timestamp(v)
    except (ValueError, TypeError):
        return None
    if ts is pd.NaT:
        return None
    if ts.tzinfo is None:
        ts = ts.tz_localize("UTC")
    return (ts.value // 1000) / 1000.0  # ns -> exact us integer first: ns counts exceed float precision


def epoch_ms(col: pd.Series) -> np.ndarray:
    """A datetime column as float epoch ms (NaN where missing); naive values are UTC."""
    import pandas as pd

    col = pd.to_datetime(col, utc=True)
    out = np.full(len(col), np.nan)
    mask = col.notna().to_numpy()
    if mask.any():
        out[mask] = col[mask].dt.tz_localize(None).astype("datetime64[ms]").astype("int64").to_numpy()
    return out


__all__ = ["parse_ts_ms", "to_epoch_ms", "epoch_ms"]
