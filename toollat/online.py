"""Learning on the job: what the Predictor adapts from the results it observes.

- **Cross-session memory** (``features.context.ProjectHistory``): per project, running latency
  statistics per tool, program, subcommand and command over every session served, read as
  features by later calls (when the bundle's features include ``project``). A call's project is
  its ``project`` field, else the last folder of its ``cwd``; calls with neither share one
  global store (``GLOBAL_PROJECT``). At most ``max_projects`` stores, least recently used dropped.
- **Adaptive conformal shifts** (``AdaptiveShift``): per tool family and level, an additive
  shift (log10 s) on the served quantile, moved after every observed result toward the level's
  coverage (adaptive conformal inference, Gibbs & Candès 2021): ``s += step * (miss - (1 -
  level))`` where ``miss`` is 1 when the result exceeded the served quantile; bounded to
  ``±max_shift``. At equilibrium each level covers its share of calls on the traffic served,
  whatever the training data was. The long-call probability is then re-made consistent with
  the shifted quantiles. ``GET /v1/model`` reports the shifts.

Settings are the bundle's ``online`` parameters; ``OnlineConfig``'s defaults are the one owner
of their values (``conf/online/default.yaml`` states the same values, checked by a test), and a
bundle without ``online`` parameters (trained before they existed) gets them too, so every
bundle learns while serving unless it was trained with ``online=off``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from toollat.core.settings import settings

GLOBAL_PROJECT = "*"


@dataclass(frozen=True)
class OnlineConfig:
    aci_step: float = 0.02        # adaptive conformal step per observed result (0: off, conf/online/off.yaml)
    aci_max_shift: float = 0.5    # log10 s: at most about 3x either way
    max_projects: int = 1000

    def __post_init__(self) -> None:
        if not (self.aci_step >= 0 and self.aci_max_shift >= 0 and self.max_projects >= 1):
            raise ValueError("aci_step >= 0, aci_max_shift >= 0, max_projects >= 1")

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "OnlineConfig":
        return settings(cls, d, "online")


class AdaptiveShift:
    """Per-family additive shifts of the quantiles, learned online; not thread-safe (the
    Predictor locks around it)."""

    def __init__(self, levels, step: float, max_shift: float):
        self.levels = np.asarray(levels, dtype=np.float64)
        self.step = step
        self.max_shift = max_shift
        self.shifts: dict[str, np.ndarray] = {}
        self.n: dict[str, int] = {}

    def apply(self, q_log: np.ndarray, families) -> np.ndarray:
        if not self.shifts:
            return q_log
        if len(q_log) == 1:
            s = self.shifts.get(families[0])
            return q_log if s is None else np.sort(q_log + s, axis=1)
        zero = np.zeros(len(self.levels))
        shift = np.stack([self.shifts.get(f, zero) for f in families])
        return np.sort(q_log + shift, axis=1)

    def update(self, family: str, y: float, served_q: np.ndarray) -> None:
        s = self.shifts.get(family)
        if s is None:
            s = self.shifts[family] = np.zeros(len(self.levels))
            self.n[family] = 0
        miss = (y > served_q).astype(np.float64)
        np.clip(s + self.step * (miss - (1.0 - self.levels)), -self.max_shift, self.max_shift, out=s)
        self.n[family] += 1

    def reset(self) -> None:
        self.shifts.clear()
        self.n.clear()

    def to_dict(self) -> dict[str, Any]:
        return {f: {"n": self.n[f], "shift_log10": [round(float(x), 4) for x in s]} for f, s in sorted(self.shifts.items())}
