"""What a first-time user hits (each failed before its fix): training calls reported as
unseen, invalid JSON, p_long disagreeing with the quantiles, counters that include the
warm-up, and the command-line conventions."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from toollat import __version__
from toollat.estimator import ToolLatencyModel
from toollat.predictor import Predictor
from toollat.core.units import p_exceeds


def strict(text: str):
    def refuse(name):
        raise ValueError(f"{name} is not JSON")
    return json.loads(text, parse_constant=refuse)


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "toollat.cli", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def train_slice(small_split, tmp_path_factory):
    train, _ = small_split
    path = tmp_path_factory.mktemp("first_use") / "train_slice.parquet"
    train[train["session_id"].isin(train["session_id"].drop_duplicates().iloc[:6])].to_parquet(path)
    return path


def test_evaluate_on_training_sessions_warns_and_can_exclude_them(small_bundle, train_slice):
    proc = cli("evaluate", "--model", str(small_bundle), "--data", str(train_slice), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "trained on" in proc.stderr and strict(proc.stdout)["seen_in_training"] > 0
    proc = cli("evaluate", "--model", str(small_bundle), "--data", str(train_slice), "--json", "--exclude-seen")
    assert proc.returncode == 1 and "every call of --data is from a session the model trained on" in proc.stderr


def test_every_json_output_is_strict(small_bundle, tracelab):
    proc = cli("evaluate", "--model", str(small_bundle), "--data", str(tracelab / "sanitized_round_trace.jsonl"), "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert strict(proc.stdout)["n"] > 0
    proc = cli("predict", "--model", str(small_bundle), "AskUserQuestion", '{"questions": [{"question": "ok?"}]}', "--json")
    assert proc.returncode == 0 and strict(proc.stdout)["p50_ms"] > 0


def test_p_long_tells_the_same_story_as_the_quantiles(small_bundle, embedder):
    p = Predictor(ToolLatencyModel.load(small_bundle, embedder))
    for call in ({"tool": "AskUserQuestion", "args": {"questions": [{"question": "Deploy?"}]}},
                 {"tool": "Bash", "args": {"command": "ls"}}, {"tool": "Task", "args": {"prompt": "refactor x"}}):
        pr = p.predict(call)
        ms = np.array([list(pr.quantiles.values())])
        lo, hi = p_exceeds(p.levels, ms, 60_000.0, np.array([0.0]))[0], p_exceeds(p.levels, ms, 60_000.0, np.array([1.0]))[0]
        assert lo - 1e-9 <= pr.p_long <= hi + 1e-9, (call["tool"], pr.quantiles, pr.p_long)
    gap = p.predict_human_gap("claude_code")
    assert gap is not None and np.isfinite(gap.p_long) and 0 <= gap.p_long <= 1


def test_counters_start_after_the_warm_up(small_bundle, embedder):
    p = Predictor(ToolLatencyModel.load(small_bundle, embedder))
    p.predict({"tool": "Bash", "args": {"command": "true"}})
    p.reset()
    assert p.model_info()["state"]["predicted"] == 0


def test_version_and_quiet():
    proc = cli("--version", timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == f"toollat {__version__}"
    proc = cli("--quiet", "evaluate", timeout=60)
    assert proc.returncode == 2  # errors still reach stderr under --quiet
