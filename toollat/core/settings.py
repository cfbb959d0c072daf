"""The one validator of settings: a mapping (a bundle's card, a Hydra group, a serving file, a
Python caller's dict) becomes the frozen dataclass that owns those settings and their defaults.

Every group of settings is a dataclass, and the dataclass is the one owner of its defaults
(``FeatureConfig``, ``HintCosts``, ``OnlineConfig``, ``DurationBounds``, ``LightGBMSpec``,
``MemoryBudget``, ``ServerLimits``, ...): Hydra reads them as the schema of their ``conf/`` group
(``toollat.config``), so a ``conf/`` file states only what differs. ``settings(cls, d, what)``
refuses a key the dataclass does not have, naming the known ones, and turns a bad value (the
dataclass's own checks in ``__post_init__``) into a ``ValueError`` that says which settings.
"""
from __future__ import annotations

from dataclasses import fields
from typing import Any, TypeVar

T = TypeVar("T")


def settings(cls: type[T], d: Any, what: str) -> T:
    """``cls(**d)`` for a mapping (None: the defaults), or ValueError naming ``what`` is wrong."""
    if d is None:
        d = {}
    if isinstance(d, cls):
        return d
    if not isinstance(d, dict):
        raise ValueError(f"{what} settings must be a mapping, not {type(d).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(d) - known)
    if unknown:
        raise ValueError(f"unknown {what} settings {unknown}; known: {sorted(known)}")
    try:
        return cls(**d)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} settings: {e}") from None


__all__ = ["settings"]
