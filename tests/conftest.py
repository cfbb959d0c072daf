"""Shared fixtures. Tests that need ../shared fail loudly in CI (CI=true) and skip elsewhere."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest

from toollat.paths import corpus_dir, shared_data_dir, tracelab_dir


TOOLLAT = [sys.executable, "-m", "toollat.cli"]


def run_cli(*args, check: bool = True, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    """``toollat ARGS...`` in a fresh process, its output as text; ``check``: exit status 0 or fail
    with the end of its stderr."""
    proc = subprocess.run([*TOOLLAT, *map(str, args)], capture_output=True, text=True, timeout=timeout, **kw)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def loopback_server(app, limits) -> Iterator[str]:
    """``app`` served by a real uvicorn server on 127.0.0.1 (a thread here) with ``limits``; yields
    its base URL once /healthz answers, and stops it after."""
    import httpx
    import uvicorn

    from toollat.serving import server_config

    port = free_port()
    srv = uvicorn.Server(server_config(app, "127.0.0.1", port, limits, log_level="warning", loop="asyncio"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(400):   # a bound on a server that never starts, not a speed requirement
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    try:
        yield base
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def _require(path: Path) -> Path:
    if not path.exists():
        msg = f"shared corpus not found at {path} (set TOOLLAT_SHARED, or put ../shared beside the checkout)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(msg + "; CI must have it", pytrace=False)
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    return _require(shared_data_dir())


@pytest.fixture(scope="session")
def corpus() -> Path:
    return _require(corpus_dir())


@pytest.fixture(scope="session")
def tracelab() -> Path:
    return _require(tracelab_dir())


@pytest.fixture(scope="session")
def corpus_ingest(corpus):
    """The whole shared corpus, ingested once per test session (~10 s)."""
    from toollat.ingest import ingest

    return ingest([corpus])


def corpus_file(corpus: Path, rel: str) -> Path:
    return _require(corpus / rel)


# -- shared small real data and a small trained bundle -----------------------------------------
SMALL_SOURCE = "PackmindHub__context-evaluator"   # 98 Claude Code sessions, ~3,200 calls
SMALL_CODEX = "EntityProcess__agentv/codex"       # 20 Codex rollouts


def pytest_configure(config):
    # One embedding cache for the test session (and the subprocesses it starts), never the user's.
    if "TOOLLAT_CACHE" not in os.environ:
        import tempfile

        os.environ["TOOLLAT_CACHE"] = tempfile.mkdtemp(prefix="toollat-test-cache-")
        config._toollat_tmp_cache = os.environ["TOOLLAT_CACHE"]


def pytest_unconfigure(config):
    # the temporary cache goes with the test session (a user's own TOOLLAT_CACHE is left alone)
    tmp = getattr(config, "_toollat_tmp_cache", None)
    if tmp:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def small_calls(corpus):
    """Real calls: one Claude Code source and the Codex rollouts of another (~9,000 calls)."""
    from toollat.ingest import ingest

    return ingest([corpus / SMALL_SOURCE, corpus / SMALL_CODEX]).to_pandas()


@pytest.fixture(scope="session")
def embedder():
    from toollat.features.embed import Embedder
    from toollat.paths import cache_dir

    return Embedder(cache_dir())


FAST_MODEL = {
    "kind": "lgbm", "calibration_folds": 2, "calibration_min": 100,
    "params": {"n_estimators": 80, "learning_rate": 0.1, "num_leaves": 31, "min_child_samples": 10},
    "classifier": {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 15, "min_child_samples": 10},
}


def small_config(**over):
    from toollat.features.pipeline import FeatureConfig
    from dataclasses import asdict

    cfg = {"name": "small", "features": asdict(FeatureConfig()), "model": FAST_MODEL, "target": {"name": "wall"},
           "levels": [0.1, 0.5, 0.9, 0.99], "tools": {"families": None, "names": None}, "threads": 2, "seed": 0,
           "hints": {"breakeven_s": 30.0, "offload_cost_s": 8.0, "offload_hold_ratio": 0.05}}
    cfg.update(over)
    return cfg


@pytest.fixture(scope="session")
def small_split(small_calls):
    from toollat.evaluation.splits import session_test_mask

    test = session_test_mask(small_calls["session_id"], 0.25, 0)
    return small_calls[~test].reset_index(drop=True), small_calls[test].reset_index(drop=True)


@pytest.fixture(scope="session")
def small_bundle(small_split, embedder, tmp_path_factory):
    """A bundle trained on the training sessions of ``small_calls`` (fast model settings)."""
    from toollat.estimator import ToolLatencyModel

    train, _ = small_split
    model = ToolLatencyModel.from_config(small_config(), embedder).fit(train)
    return model.save(tmp_path_factory.mktemp("bundles") / "small", {"data": {"calls": int(len(train))}})


def decide(levels, values_ms, costs):
    """The hint for one gap from its quantiles (ms): ``hints.decide_plans`` for one row."""
    import numpy as np

    from toollat.hints import Hint, decide_plans

    actions, ttl, then = decide_plans(levels, np.asarray(values_ms, dtype=np.float64)[None, :], costs)
    return Hint(actions[0], float(ttl[0]), then[0])
