"""Shared fixtures. Tests that need ../shared fail loudly in CI (CI=true) and skip elsewhere."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from toollat.paths import corpus_dir, shared_data_dir, tracelab_dir


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
