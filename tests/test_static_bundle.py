"""A bundle with the static embedder: trains, round-trips, and serves without torch."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from conftest import small_config
from toollat.estimator import ToolLatencyModel


@pytest.fixture(scope="module")
def static_bundle(small_split, tmp_path_factory):
    train, test = small_split
    cfg = small_config()
    cfg["features"] = {**cfg["features"], "embedder": "static"}
    keep = train["session_id"].isin(train["session_id"].drop_duplicates().iloc[:40])
    m = ToolLatencyModel.from_config(cfg).fit(train[keep].reset_index(drop=True))
    return m, m.save(tmp_path_factory.mktemp("static") / "b"), test.iloc[:300].reset_index(drop=True)


def test_round_trip(static_bundle):
    m, path, test = static_bundle
    assert {"static.npy", "static.tokenizer.json", "static.json"} <= {p.name for p in path.iterdir()}
    np.testing.assert_array_equal(ToolLatencyModel.load(path).predict(test).to_numpy(), m.predict(test).to_numpy())


def test_serving_a_static_bundle_imports_no_torch(static_bundle):
    _, path, _ = static_bundle
    code = ("import sys, time; t = time.perf_counter(); from toollat import Predictor; p = Predictor.load(sys.argv[1]); "
            "pr = p.predict({'tool': 'Bash', 'args': {'command': 'pytest -x tests/never_seen_before.py'}}); "
            "assert pr.p50_ms > 0; assert 'torch' not in sys.modules, 'torch was imported'; "
            "assert 'sentence_transformers' not in sys.modules; print(time.perf_counter() - t)")
    proc = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
