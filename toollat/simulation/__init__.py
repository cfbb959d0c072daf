"""KV-cache policy simulation: replay the tool and human gaps of agent sessions under policies.

``simulate(calls_df, policies, costs, train_df)`` -> ``SimulationResult`` (``to_dict()``,
``table()``, ``headline``); ``plot(result, path)`` draws hit rate against storage.
``gaps`` turns a canonical calls table into gaps, ``policies`` decides per gap (static TTL,
per-tool median, toollat's hint, oracle), ``metrics`` scores a decision. The definitions
(hit, storage ratio, amplification, the headline's interpolation) are in those modules'
docstrings; docs/ARCHITECTURE.md "KV-cache simulation" is the contract.
"""
from __future__ import annotations

from .gaps import GapReport, Gaps, build_gaps, prediction_columns_in
from .metrics import Curve, evaluate, oracle_frontier
from .plot import plot
from .policies import (ACTION_NAMES, DROP, KEEP, OFFLOAD, Decision, HintPolicy, Oracle,
                       PerToolMedianTTL, Policy, StaticTTL, has_predictions)
from .simulator import POLICY_NAMES, STATIC_TTLS_S, SWEEP_SCALES, SimulationResult, headline, simulate

__all__ = [
    "ACTION_NAMES", "DROP", "KEEP", "OFFLOAD", "POLICY_NAMES", "STATIC_TTLS_S",
    "SWEEP_SCALES", "Curve", "Decision", "GapReport", "Gaps", "HintPolicy", "Oracle",
    "PerToolMedianTTL", "Policy", "SimulationResult", "StaticTTL", "build_gaps", "evaluate",
    "has_predictions", "headline", "oracle_frontier", "plot", "prediction_columns_in", "simulate",
]
