"""Grouped splits: by session (never by row), and leave-one-source-out."""
from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from toollat.core.hashing import session_fold


def session_test_mask(sessions: pd.Series, test_fraction: float, seed: int = 0) -> np.ndarray:
    """True for calls of held-out sessions: a session is held out by a hash of (seed, session id)."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError("test_fraction must be in (0, 1)")
    cut = int(round(test_fraction * 10_000))
    uniq = pd.unique(sessions)
    held = uniq[session_fold(uniq, 10_000, salt=str(seed)) < cut]
    return sessions.isin(held).to_numpy()


def source_masks(sources: pd.Series) -> Iterator[tuple[str, np.ndarray]]:
    """(source, test mask) for every source with calls."""
    for src in sorted(pd.unique(sources)):
        yield str(src), (sources == src).to_numpy()
