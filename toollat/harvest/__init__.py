"""Harvest: measure real tool-call latencies on this machine, written as Claude Code session logs.

Public logs rarely say how long a tool call took with the argument that mattered, and never on
the machine the scheduler runs on. ``run_harvest(out_dir)`` produces such data: it builds a
throw-away git repository (real source copied from the installed standard library and
site-packages, plus a generated pytest suite with fast and slow tests), plays scripted agent
sessions against it that really run ``Read``, ``Grep``, ``Glob``, ``Edit``, ``Write`` and
``Bash`` calls, times each call with the wall clock, and writes every session as
``<out_dir>/<session-id>.jsonl`` in Claude Code's format, so ``toollat ingest`` reads it like
any other log. Latencies span about three orders of magnitude, from sub-millisecond reads to
multi-second sleeps, test runs and archive builds.

Safety is enforced in code (``safety.py``): Bash runs only commands of a fixed catalog, built
from templates and checked token by token (``check_command``), as argv lists without a shell;
every path must resolve inside the workspace (``check_path``); nothing networked runs and the
children get an environment without proxies or user config; each call is bounded by
``call_timeout_s`` (a timed-out pipeline's whole process group is killed); the workspace is
removed afterwards, also on error.

Modules: ``workspace`` (the repository), ``agent`` (what the scripted sessions do),
``tools`` (running one call), ``transcript`` (the JSONL records), ``harvest`` (the loop and
the report), ``safety`` (catalog, path checks, child environment).
"""
from .harvest import HarvestedCall, HarvestReport, run_harvest
from .safety import CATALOG, Catalog, HarvestRefused, Stage, check_command, check_path
from .tools import Outcome, ToolRunner

__all__ = [
    "CATALOG", "Catalog", "HarvestRefused", "HarvestReport", "HarvestedCall", "Outcome", "Stage",
    "ToolRunner", "check_command", "check_path", "run_harvest",
]
