"""Baselines, always reported beside the model (docs/ARCHITECTURE.md, "Evaluation").

- ``global_median``: the training distribution of all calls, whatever the call.
- ``per_tool_median``: the training distribution of the call's tool (what TraceLab's per-tool
  view gives); unknown tools fall back to their family, then to all calls.
- ``per_command_mean``: a running mean of latency (seconds) per first shell word, per tool for
  other calls — what Continuum's released code does. It starts from the training means and, at
  prediction, keeps learning from results as they arrive, in time order across all sessions
  (a call only sees results that arrived before it was emitted).

Quantiles other than p50 come from the matching training distribution's spread. Keys are
stored as hashes (tool names excepted), so a bundle holds no argument text.
"""
from __future__ import annotations

import heapq
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from toollat.core.families import tool_family
from toollat.features.text import code, shell_command
from toollat.units import FLOOR_MS, history_ms

from .base import LEVELS, LONG_Y, Prediction, monotone

if TYPE_CHECKING:  # tables come from training and evaluation; serving never imports pandas
    import pandas as pd


def _dist(y: np.ndarray, levels: tuple[float, ...]) -> list[float]:
    return [float(v) for v in np.quantile(y, levels)] + [float((y >= LONG_Y).mean())]


class GlobalMedian:
    kind: ClassVar[str] = "global_median"

    def __init__(self, levels: tuple[float, ...] = LEVELS) -> None:
        self.levels = tuple(levels)
        self.long_threshold = 0.5
        self.dist: list[float] = []

    def fit(self, calls, X, y, names) -> "GlobalMedian":
        self.dist = _dist(y, self.levels)
        return self

    def predict(self, calls: pd.DataFrame, X=None) -> Prediction:
        n = len(calls)
        row = np.asarray(self.dist)
        return Prediction(self.levels, np.tile(row[:-1], (n, 1)), np.full(n, row[-1]))

    def save(self, directory: Path, prefix: str) -> dict[str, Any]:
        return {"levels": list(self.levels), "dist": self.dist}

    @classmethod
    def load(cls, directory: Path, prefix: str, state: dict[str, Any]) -> "GlobalMedian":
        m = cls(tuple(state["levels"]))
        m.dist = [float(x) for x in state["dist"]]
        if len(m.dist) != len(m.levels) + 1:
            raise ValueError("global_median: dist does not match levels")
        return m


class PerToolMedian:
    kind: ClassVar[str] = "per_tool_median"

    def __init__(self, min_calls: int = 5, levels: tuple[float, ...] = LEVELS) -> None:
        self.min_calls = min_calls
        self.levels = tuple(levels)
        self.long_threshold = 0.5
        self.by_tool: dict[str, list[float]] = {}
        self.by_family: dict[str, list[float]] = {}
        self.overall: list[float] = []

    def fit(self, calls: pd.DataFrame, X, y, names) -> "PerToolMedian":
        self.overall = _dist(y, self.levels)
        for col, store in (("tool_name", self.by_tool), ("tool_family", self.by_family)):
            for key, idx in calls.groupby(col).indices.items():
                if len(idx) >= self.min_calls:
                    store[str(key)] = _dist(y[idx], self.levels)
        return self

    def row(self, tool: str) -> list[float]:
        return self.by_tool.get(tool) or self.by_family.get(tool_family(tool)) or self.overall

    def predict(self, calls: pd.DataFrame, X=None) -> Prediction:
        rows = np.array([self.row(t) for t in calls["tool_name"]], dtype=np.float64).reshape(len(calls), len(self.levels) + 1)
        return Prediction(self.levels, monotone(rows[:, :-1]), rows[:, -1])

    def median_ms(self, tool: str) -> float:
        """The tool's training median latency in ms (family, then all calls, as fallbacks)."""
        return float(1000.0 * 10.0 ** self.row(tool)[self.levels.index(0.5)])

    def save(self, directory: Path, prefix: str) -> dict[str, Any]:
        return {"min_calls": self.min_calls, "levels": list(self.levels), "by_tool": self.by_tool,
                "by_family": self.by_family, "overall": self.overall}

    @classmethod
    def load(cls, directory: Path, prefix: str, state: dict[str, Any]) -> "PerToolMedian":
        m = cls(state["min_calls"], tuple(state["levels"]))
        m.by_tool, m.by_family, m.overall = state["by_tool"], state["by_family"], state["overall"]
        return m


def command_key(tool: str, args_json: str | None) -> int:
    """Hash of the first shell word (shell calls) or of the tool name."""
    if isinstance(args_json, str):
        try:
            args = json.loads(args_json)
        except json.JSONDecodeError:
            args = None
        cmd = shell_command(tool, args) if isinstance(args, dict) else None
        if cmd and cmd.split():
            return code("cmd\x1f" + tool + "\x1f" + cmd.split()[0])
    return code("tool\x1f" + tool)


class PerCommandMean:
    kind: ClassVar[str] = "per_command_mean"

    def __init__(self, levels: tuple[float, ...] = LEVELS, target: str = "wall") -> None:
        self.levels = tuple(levels)
        self.target = target
        self.long_threshold = 0.5
        self.sums: dict[int, list[float]] = {}  # key -> [n, sum of seconds]
        self.tools = PerToolMedian(levels=self.levels)

    def fit(self, calls: pd.DataFrame, X, y, names) -> "PerCommandMean":
        self.tools.fit(calls, X, y, names)
        seconds = 10.0 ** y
        for k, s in zip((command_key(t, a) for t, a in zip(calls["tool_name"], calls["args"])), seconds):
            acc = self.sums.setdefault(k, [0.0, 0.0])
            acc[0] += 1
            acc[1] += s
        return self

    def predict(self, calls: pd.DataFrame, X=None) -> Prediction:
        """Running means, updated by results in time order (see module docstring)."""
        base = self.tools.predict(calls)
        keys = [command_key(t, a) for t, a in zip(calls["tool_name"], calls["args"])]
        emitted = calls["emitted_at"].astype("int64").to_numpy() if "emitted_at" in calls else np.arange(len(calls))
        # a result arrives after its wall time; what it teaches is the target's latency
        wall = calls["wall_ms"].to_numpy(dtype=np.float64) if "wall_ms" in calls else None
        seen = history_ms(calls, self.target) if wall is not None else None
        sums = {k: list(v) for k, v in self.sums.items()}
        p50 = np.empty(len(calls))
        arrivals: list[tuple[float, int]] = []  # (result time, row)
        for i in np.argsort(emitted, kind="stable"):
            while arrivals and arrivals[0][0] < emitted[i]:
                _, j = heapq.heappop(arrivals)
                acc = sums.setdefault(keys[j], [0.0, 0.0])
                acc[0] += 1
                acc[1] += max(seen[j], FLOOR_MS) / 1000.0
            acc = sums.get(keys[i])
            p50[i] = np.log10(max(acc[1] / acc[0], 0.01)) if acc and acc[0] else base.p50[i]
            if wall is not None and not np.isnan(wall[i]):
                heapq.heappush(arrivals, (emitted[i] + wall[i], int(i)))
        shift = p50 - base.p50
        return Prediction(self.levels, monotone(base.quantiles + shift[:, None]), base.p_long)

    def save(self, directory: Path, prefix: str) -> dict[str, Any]:
        return {"sums": [[k, v[0], v[1]] for k, v in self.sums.items()], "target": self.target,
                "tools": self.tools.save(directory, prefix)}

    @classmethod
    def load(cls, directory: Path, prefix: str, state: dict[str, Any]) -> "PerCommandMean":
        tools = PerToolMedian.load(directory, prefix, state["tools"])
        m = cls(tools.levels, state["target"])
        m.tools = tools
        m.sums = {int(k): [float(n), float(s)] for k, n, s in state["sums"]}
        return m


BASELINES = (GlobalMedian, PerToolMedian, PerCommandMean)


def build_baselines(levels: tuple[float, ...], target: str) -> dict[str, object]:
    """The three baselines, unfitted, for the given levels and target."""
    return {"global_median": GlobalMedian(levels), "per_tool_median": PerToolMedian(levels=levels),
            "per_command_mean": PerCommandMean(levels, target)}
