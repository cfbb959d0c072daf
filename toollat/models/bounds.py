"""Explicit durations in a call's arguments bound its prediction (a post-rule after any model).

A call that says how long it will wait is taken at its word, within what its agent's harness
does with such a request (measured on the shared corpus, `experiments/accuracy/README.md`):

- **Sleeps bound from below.** A foreground ``sleep N`` (not backgrounded, not inside a loop,
  not ``run_in_background``) takes at least N seconds: every quantile is raised to N. Two
  harnesses cut that short, and the bound follows them: Codex ``exec_command`` returns at its
  yield window (at most ``codex_yield_cap_s``, 30 s: sleeps of 35-90 s all returned at
  30.0-30.6 s) and the rest is polled by ``write_stdin``; Claude Code's Bash refuses a sleep of
  ``bash_refuses_sleep_s`` (20 s) or more at once (45 s -> 13 ms, 90 s -> 1 ms, 20 s -> 0.6 s),
  so no lower bound is set there.
- **Timeouts and yield windows bound from above.** A tool ``timeout`` (Claude Bash, ms), a
  ``timeout N`` prefix or ``--timeout`` flag, and Codex's yield window (``yield_time_ms``, at most
  30 s) cap the runtime: quantiles at levels up to 0.9 are lowered to the cap plus ``slack_s``.
  The top level is left alone: the wall time also holds permission prompts, which no timeout
  bounds (1.2% of calls with a timeout exceeded it by more than 5 s, all of them waits).

Quantiles stay sorted. The bounds read the parsed-argument columns of the feature matrix, so
a feature configuration without arguments has none.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np

COLUMNS = ("sh_sleep_s", "sh_background", "sh_loop", "a_run_in_background", "sh_timeout_s", "a_timeout_s", "a_yield_s")
UPPER_LEVEL_MAX = 0.9
_BIG = float(np.finfo(np.float64).max)


@lru_cache(maxsize=16)
def _columns(names: tuple[str, ...]) -> tuple[int, ...] | None:
    """Where ``COLUMNS`` are in a feature layout (None if it has no argument columns)."""
    return tuple(names.index(c) for c in COLUMNS) if all(c in names for c in COLUMNS) else None


def _nz(v: float) -> float:
    """``np.nan_to_num`` of one number."""
    return 0.0 if v != v else (_BIG if v == math.inf else (-_BIG if v == -math.inf else v))


def _fmin(a: float, b: float) -> float:
    """``np.fmin`` of two numbers: the smaller, ignoring a NaN."""
    return b if a != a else (a if b != b else min(a, b))


@dataclass(frozen=True)
class DurationBounds:
    enabled: bool = True
    codex_yield_cap_s: float = 30.0
    bash_refuses_sleep_s: float = 20.0
    slack_s: float = 2.0

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DurationBounds":
        return cls(**(d or {}))

    def limits(self, tools, X: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """Per call: (lower, upper) bound in seconds (0 / inf where none); None if the matrix has
        no argument columns or the rule is off."""
        idx = _columns(tuple(names)) if self.enabled else None
        if idx is None:
            return None
        if len(X) == 1:   # one call (serving): the same rule on numbers, without array overhead
            lo, hi = self._limits_one(str(tools[0]).lower(), [float(X[0, i]) for i in idx])
            return np.array([lo]), np.array([hi])
        col = {c: np.asarray(X[:, i], dtype=np.float64) for c, i in zip(COLUMNS, idx)}
        tool = np.asarray([str(t).lower() for t in tools])
        codex = tool == "exec_command"
        bash = tool == "bash"
        sleep = np.nan_to_num(col["sh_sleep_s"])
        foreground = (np.nan_to_num(col["sh_background"]) == 0) & (np.nan_to_num(col["sh_loop"]) == 0) \
            & (np.nan_to_num(col["a_run_in_background"]) == 0)
        lo = np.where(foreground, sleep, 0.0)
        lo = np.where(codex, np.minimum(lo, self.codex_yield_cap_s), lo)
        lo = np.where(bash & (sleep >= self.bash_refuses_sleep_s), 0.0, lo)
        hi = np.fmin(col["sh_timeout_s"], col["a_timeout_s"])
        yield_s = np.where(codex | (tool == "write_stdin"),
                           np.fmin(col["a_yield_s"], self.codex_yield_cap_s), np.nan)
        hi = np.fmin(hi, yield_s)
        hi = np.where(np.isnan(hi) | (hi <= 0), np.inf, hi + self.slack_s)
        return lo, hi

    def _limits_one(self, tool: str, v: list[float]) -> tuple[float, float]:
        sleep_s, background, loop, in_background, sh_timeout, a_timeout, a_yield = v
        sleep = _nz(sleep_s)
        foreground = _nz(background) == 0 and _nz(loop) == 0 and _nz(in_background) == 0
        lo = sleep if foreground else 0.0
        if tool == "exec_command":
            lo = min(lo, self.codex_yield_cap_s)
        if tool == "bash" and sleep >= self.bash_refuses_sleep_s:
            lo = 0.0
        hi = _fmin(sh_timeout, a_timeout)
        if tool in ("exec_command", "write_stdin"):
            hi = _fmin(hi, _fmin(a_yield, self.codex_yield_cap_s))
        hi = math.inf if hi != hi or hi <= 0 else hi + self.slack_s
        return lo, hi

    def apply(self, levels, quantiles_log: np.ndarray, lo_s: np.ndarray, hi_s: np.ndarray) -> np.ndarray:
        """Quantiles (log10 s) within the bounds; an upper bound wins over a lower one."""
        if len(quantiles_log) == 1 and lo_s[0] == 0 and hi_s[0] == math.inf:
            return quantiles_log   # one call without an explicit duration (most calls): unchanged
        q = np.array(quantiles_log, dtype=np.float64, copy=True)
        with np.errstate(divide="ignore"):
            lo = np.log10(np.maximum(lo_s, 1e-12))
            hi = np.log10(hi_s)
        has_lo = lo_s > 0
        q[has_lo] = np.maximum(q[has_lo], lo[has_lo, None])
        capped = np.asarray(levels) <= UPPER_LEVEL_MAX
        q[:, capped] = np.minimum(q[:, capped], hi[:, None])
        return np.sort(q, axis=1)

