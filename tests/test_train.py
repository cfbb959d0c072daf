"""`python train.py +exp=grep_shell` end to end on a real corpus slice, and `toollat evaluate`.

Small model settings keep this fast; MLflow writes to a temporary (fresh) sqlite store. The run
is made as a user makes it (progress on), with its output going to pipes 80 columns wide, as in
a log, CI or an agent's shell: what it prints there is checked too.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SMALL_SOURCE
from toollat.paths import REPO_ROOT


def train(corpus, tmp: Path, run_dir: str, *over: str) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "train.py", "+exp=grep_shell",
        f"data.paths=[{corpus / SMALL_SOURCE}]",
        f"mlflow.tracking_uri=sqlite:///{tmp}/mlflow.db", f"mlflow.artifact_root={tmp}/mlruns",
        f"paths.models={tmp}/models", f"hydra.run.dir={tmp}/{run_dir}",
        "model.params.n_estimators=60", "model.params.learning_rate=0.1",
        "model.classifier.n_estimators=40", "model.calibration_folds=2", *over,
    ]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "COLUMNS": "80"})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    proc = train(corpus, tmp, "hydra")
    return tmp, proc.stdout, proc.stderr


def test_run_prints_metrics_with_baselines(trained):
    _, out, _ = trained
    assert "held-out sessions" in out
    for name in ("toollat", "per_tool_median", "per_command_mean", "global_median", "mae_log10", "coverage_p90"):
        assert name in out
    assert "data: explicit data paths:" in out


def test_run_exports_a_bundle_and_logs_to_mlflow(trained):
    tmp, _, _ = trained
    card = json.loads((tmp / "models" / "grep_shell" / "card.json").read_text())
    assert card["name"] == "grep_shell" and card["tools"]["families"] == ["shell", "search"]
    held = card["metrics"]["held_out_sessions"]["models"]
    assert held["toollat"]["mae_log10"] < held["per_tool_median"]["mae_log10"]

    import mlflow
    from mlflow.tracking import MlflowClient

    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    client = MlflowClient()
    exp = client.get_experiment_by_name("grep_shell")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"
    run = runs[0]
    assert run.info.run_id == card["mlflow_run_id"]
    assert "toollat.mae_log10" in run.data.metrics and "per_tool_median.mae_log10" in run.data.metrics
    assert any(k.startswith("family.shell.") for k in run.data.metrics)
    plots = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert plots == {"plots/predicted_vs_actual.png", "plots/quantile_calibration.png",
                     "plots/per_family_error.png", "plots/long_call_pr.png", "plots/p_long_reliability.png"}
    assert any(a.path == "bundle/card.json" for a in client.list_artifacts(run.info.run_id, "bundle"))


def test_evaluate_json_contract(trained, corpus):
    tmp, _, _ = trained
    codex = corpus / "EntityProcess__agentv" / "codex"
    proc = subprocess.run([sys.executable, "-m", "toollat.cli", "evaluate", "--model", str(tmp / "models" / "grep_shell"),
                           "--data", str(codex), "--json"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert isinstance(out["n"], int) and out["n"] > 1000
    assert set(out["models"]) == {"toollat", "per_tool_median", "per_command_mean", "global_median"}
    for metrics in out["models"].values():
        assert {"mae_log10", "within_2x", "spearman", "coverage_p90", "long_pr_auc", "weighted_mae_log10",
                "long_pr_auc_30s", "p_long_ece", "decision_cost", "decision_gap_closed"} <= set(metrics)
    assert out["decision"]["fair_policy"] == "per_tool_median" and out["decision"]["oracle_cost"] >= 0


def test_unknown_experiment_is_a_clear_error(tmp_path):
    proc = subprocess.run([sys.executable, "train.py", "+exp=nope", f"hydra.run.dir={tmp_path}"], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "nope" in proc.stderr and "grep_shell" in proc.stderr


def test_run_registers_a_pyfunc_model_and_exports_its_held_out_split(trained, corpus):
    """`mlflow.pyfunc.load_model("models:/grep_shell/latest").predict(calls_df)` returns the quantiles."""
    tmp, _, _ = trained
    held = tmp / "hydra" / "held_out_sessions.parquet"
    assert held.is_file()
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(f"sqlite:///{tmp}/mlflow.db")
    model = mlflow.pyfunc.load_model("models:/grep_shell/latest")
    calls = pd.read_parquet(held).head(50)
    pred = model.predict(calls)
    assert {"pred_p10_ms", "pred_p50_ms", "pred_p90_ms", "pred_p99_ms", "pred_p_long"} <= set(pred.columns)
    assert len(pred) == len(calls) and (pred["pred_p90_ms"] >= pred["pred_p50_ms"]).all()
    card = json.loads((tmp / "models" / "grep_shell" / "card.json").read_text())
    assert str(tmp) not in json.dumps(card)  # no absolute path of this machine in a shareable bundle


def test_run_output_is_what_the_run_says(trained):
    """In a log (no terminal, 80 columns): progress for each long step, and no escape code,
    library warning or log line, artifact download bar, or table header cut to the width."""
    _, out, err = trained
    both = out + err
    assert "\x1b" not in both, "escape codes in a log"
    for noise in ("Warning", "WARNING", "INFO", "Downloading artifacts", "…"):
        assert noise not in both, noise
    header = next(line for line in out.splitlines() if line.lstrip().startswith("metric"))
    assert all(name in header for name in ("toollat", "per_tool_median", "per_command_mean", "global_median")), header
    for said in ("opening the MLflow store", "fitting features and lgbm model, then scoring held-out sessions",
                 "saving the bundle, logging the run to MLflow"):
        assert said in err, said       # each long step says it starts (and every 15 s while it runs)
    assert re.search(r"fitted on [\d,]+ training calls in \d+ s \(features \d+ s, model \d+ s\)", out)
    assert re.search(r"model registered as 'grep_shell' version 1\b", out)


def test_a_second_run_keeps_the_bundle_and_overwrite_true_replaces_it(trained, corpus, tmp_path):
    """An ablation must not destroy the bundle a user compares it with (issue 23.2)."""
    tmp, _, _ = trained
    shutil.copytree(tmp / "models", tmp_path / "models")  # the first run's bundle, in a store of its own
    named = tmp_path / "models" / "grep_shell" / "card.json"
    first = named.read_bytes()
    second = train(corpus, tmp_path, "hydra2", "features=no_embeddings")
    assert named.read_bytes() == first, "models/grep_shell was replaced without overwrite=true"
    kept = tmp_path / "hydra2" / "bundle" / "card.json"
    assert json.loads(kept.read_text())["params"]["features"]["embeddings"] is False
    assert f"{tmp_path / 'models' / 'grep_shell'} exists and is kept: this run's bundle goes to " \
           f"{tmp_path / 'hydra2' / 'bundle'}" in second.stdout.replace("\n", "")
    assert f"bundle: {tmp_path / 'hydra2' / 'bundle'}" in second.stdout
    third = train(corpus, tmp_path, "hydra3", "features=no_embeddings", "overwrite=true")
    card = json.loads(named.read_text())
    assert named.read_bytes() != first and card["params"]["features"]["embeddings"] is False
    assert not (tmp_path / "hydra3" / "bundle").exists()
    assert "is kept" not in third.stdout and f"bundle: {tmp_path / 'models' / 'grep_shell'}" in third.stdout
    assert re.search(r"version 2\b", third.stdout)   # the registry keeps every run's bundle
