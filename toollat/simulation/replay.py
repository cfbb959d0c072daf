"""Simulating with a model bundle: its causal predictions for a table, and the policies it implies.

``simulate_bundle(predictor, calls)`` adds the Predictor's predictions to every call (each
session replayed from an empty history, as serving would see it), builds the per-tool
policies (median TTL, and the distribution through the hint rule) from the bundle's own baseline and the toollat policy from its hint costs and its
training distribution of human waits, and runs ``simulate``.
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from toollat.predictor import Predictor

from .policies import DEFAULT_HUMAN_TTL_S, HintPolicy, PerToolHint, PerToolMedianTTL
from .simulator import POLICY_NAMES, SimulationResult, simulate


def bundle_policies(predictor: Predictor) -> dict[str, object]:
    human = predictor.model.human_gaps_
    human_ms = human["ms"]["*"] if human else None
    levels = human["levels"] if human else None
    human_median_s = human_ms[levels.index(0.5)] / 1000.0 if human else DEFAULT_HUMAN_TTL_S
    out: dict[str, object] = {"toollat": HintPolicy(predictor.costs, human_quantiles_ms=human_ms, levels=predictor.levels)}
    ptm = predictor.model.baselines_.get("per_tool_median")
    if ptm is not None:  # its stored distributions are log10 s at its levels
        mid = ptm.levels.index(0.5)
        by_tool = {t: 10.0 ** d[mid] for t, d in ptm.by_tool.items()}
        by_family = {f: 10.0 ** d[mid] for f, d in ptm.by_family.items()}
        out["per_tool_median"] = PerToolMedianTTL.from_medians(by_tool, 10.0 ** ptm.overall[mid], human_median_s, by_family)
        out["per_tool"] = PerToolHint(ptm, predictor.costs, human_quantiles_ms=human_ms, levels=predictor.levels)
    return out


def simulate_bundle(predictor: Predictor, calls: pd.DataFrame, policies: Sequence[str] = POLICY_NAMES,
                    progress: bool = False, plot_path: Path | None = None) -> SimulationResult:
    unknown = [p for p in policies if p not in POLICY_NAMES]
    if unknown:
        raise ValueError(f"unknown policies {unknown}; choose from {list(POLICY_NAMES)}")
    predicted = predictor.predict_frame(calls, progress=progress) if "toollat" in policies else calls
    implied = bundle_policies(predictor)
    chosen = [implied.get(p, p) for p in policies]
    result = simulate(predicted, policies=chosen, costs=predictor.costs, levels=predictor.levels)
    if plot_path is not None:
        from .plot import plot

        plot(result, plot_path)
        _log_to_active_mlflow_run(plot_path)
    return result


def _log_to_active_mlflow_run(path: Path) -> None:
    """Log the plot when an MLflow run is active (e.g. inside an experiment script)."""
    import sys

    mlflow = sys.modules.get("mlflow")
    if mlflow is not None and mlflow.active_run() is not None:
        mlflow.log_artifact(str(path), "simulation")


__all__ = ["bundle_policies", "simulate_bundle"]
