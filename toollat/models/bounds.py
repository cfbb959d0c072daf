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

from dataclasses import dataclass
from typing import Any

import numpy as np

from toollat.core.settings import settings

COLUMNS = ("sh_sleep_s", "sh_background", "sh_loop", "a_run_in_background", "sh_timeout_s", "a_timeout_s", "a_yield_s")
UPPER_LEVEL_MAX = 0.9


@dataclass(frozen=True)
class DurationBounds:
    enabled: bool = True
    codex_yield_cap_s: float = 30.0
    bash_refuses_sleep_s: float = 20.0
    slack_s: float = 2.0

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> "DurationBounds":
        return settings(cls, d, "bounds")

    def limits(self, tools, X: np.ndarray, names: list[str]) -> tuple[np.ndarray, np.ndarray] | None:
        """Per call: (lower, upper) bound in seconds (0 / inf where none); None if the matrix has
        no argument columns or the rule is off."""
        if not self.enabled or any(c not in names for c in COLUMNS):
            return None
        col = {c: np.asarray(X[:, names.index(c)], dtype=np.float64) for c in COLUMNS}
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

    def apply(self, levels, quantiles_log: np.ndarray, lo_s: np.ndarray, hi_s: np.ndarray) -> np.ndarray:
        """Quantiles (log10 s) within the bounds; an upper bound wins over a lower one."""
        q = np.array(quantiles_log, dtype=np.float64, copy=True)
        with np.errstate(divide="ignore", over="ignore"):
            lo = np.log10(np.maximum(lo_s, 1e-12))
            hi = np.log10(hi_s)
            # a bound read back in seconds is the bound itself, not one rounding step past it
            lo = np.where(10.0 ** lo < lo_s, np.nextafter(lo, np.inf), lo)
            hi = np.where(10.0 ** hi > hi_s, np.nextafter(hi, -np.inf), hi)
        has_lo = lo_s > 0
        q[has_lo] = np.maximum(q[has_lo], lo[has_lo, None])
        capped = np.asarray(levels) <= UPPER_LEVEL_MAX
        q[:, capped] = np.minimum(q[:, capped], hi[:, None])
        return np.sort(q, axis=1)

