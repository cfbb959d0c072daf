"""`pip install toollat` (no extras) is what a scheduler needs: the shipped default loads and
predicts, from Python and from `toollat predict`, without torch or any training package; a
command whose extra is missing says which extra to install. A real fresh venv, a real pip
install of this checkout (not editable), run from a directory outside the checkout."""
from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# What the serving path must never import (the light install has none of them but numpy's
# companions; the full environment has all, so the import check below is meaningful there too).
HEAVY = ("torch", "sentence_transformers", "transformers", "pandas", "pyarrow", "scipy", "sklearn", "lightgbm",
         "mlflow", "hydra", "dask", "distributed", "matplotlib", "fastapi", "pydantic")
SERVE_ONE = ("import sys, json; from toollat import Predictor; p = Predictor.load('default'); "
             "pr = p.predict({'tool': 'Bash', 'args': {'command': 'cargo test --release'}, 'session_id': 's', 'call_id': 'c'}); "
             "p.observe(call_id='c', latency_ms=5000.0); "
             "print(json.dumps({'p50': pr.p50_ms, 'hint': pr.hint.action, 'heavy': sorted(m for m in %r if m in sys.modules)}))" % (HEAVY,))


@pytest.fixture(scope="module")
def light_venv(tmp_path_factory) -> Path:
    where = tmp_path_factory.mktemp("light") / "venv"
    venv.EnvBuilder(with_pip=True).create(where)
    py = where / "bin" / "python"
    proc = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(REPO_ROOT)],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return where


def _run(args, cwd: Path, timeout: float = 300):
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=cwd, timeout=timeout)


@pytest.mark.slow
def test_a_plain_install_has_no_training_packages(light_venv, tmp_path):
    proc = _run([light_venv / "bin" / "python", "-m", "pip", "list", "--format=json"], tmp_path)
    installed = {p["name"].lower() for p in json.loads(proc.stdout)}
    assert "toollat" in installed
    assert not installed & {"torch", "sentence-transformers", "transformers", "mlflow", "hydra-core", "dask",
                            "distributed", "matplotlib", "pandas", "pyarrow", "scikit-learn", "fastapi"}, installed


@pytest.mark.slow
def test_the_default_predicts_from_python_and_the_command_line(light_venv, tmp_path):
    proc = _run([light_venv / "bin" / "python", "-c", SERVE_ONE], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["p50"] > 0 and out["hint"] in ("keep", "offload", "drop") and out["heavy"] == []
    proc = _run([light_venv / "bin" / "toollat", "predict", "--model", "default", "Bash", '{"command": "ls"}'], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.startswith("Bash: p50 ") and "hint:" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("args, extra", [
    (["serve", "--model", "default"], "serve"),
    (["ingest", "logs/", "--out", "calls.parquet"], "data"),
    (["evaluate", "--data", "calls.parquet"], "data"),
    (["ingest", "logs/", "--out", "calls/", "--dask", "local:2"], "dask"),
])
def test_a_missing_extra_is_one_line_naming_it(light_venv, tmp_path, args, extra):
    proc = _run([light_venv / "bin" / "toollat", *args], tmp_path, timeout=120)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and f"pip install 'toollat[{extra}]'" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_training_without_its_extra_says_so(light_venv, tmp_path):
    proc = _run([light_venv / "bin" / "python", REPO_ROOT / "train.py", "+exp=grep_shell"], tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "pip install 'toollat[train]'" in proc.stderr


def test_the_serving_path_imports_no_heavy_package_here_either():
    """In the full environment too (everything installed), loading the shipped default and
    predicting imports none of the training or table packages: they are what made import + load
    cost a second."""
    proc = subprocess.run([sys.executable, "-c", SERVE_ONE], capture_output=True, text=True, timeout=300,
                          cwd=REPO_ROOT.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["heavy"] == []
