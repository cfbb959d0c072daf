"""The embedding cache survives kills and damage: written as it goes, damaged shards dropped (never
fatal), stale temporary files removed, the shard count bounded."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from toollat.features.embed import MODEL_NAME, Embedder


@pytest.fixture(scope="module")
def texts(small_calls) -> list[str]:
    """400 distinct real call texts."""
    from toollat.core.call import calls_from_frame
    from toollat.features.text import embed_text

    distinct = sorted({embed_text(c.tool, c.args) for c in calls_from_frame(small_calls)})
    step = max(1, len(distinct) // 400)
    return distinct[::step][:400]


def shards(cache: Path) -> list[Path]:
    return sorted((cache / "embeddings" / MODEL_NAME).glob("shard-*.npz"))


def shard_sizes(cache: Path) -> list[int]:
    out = []
    for s in shards(cache):
        with np.load(s, allow_pickle=False) as z:
            out.append(len(z["keys"]))
    return out


def test_cold_encode_writes_a_shard_every_flush_every_texts(texts, tmp_path):
    e = Embedder(tmp_path, batch_size=32, flush_every=64)
    vecs = e.encode(texts[:200])
    # before flush(): three full shards are already on disk, the last 8 texts wait for the next write
    assert shard_sizes(tmp_path) == [64, 64, 64]
    e.flush()
    assert sorted(shard_sizes(tmp_path)) == [8, 64, 64, 64]
    again = Embedder(tmp_path)
    np.testing.assert_allclose(again.encode(texts[:200]), vecs, atol=2e-3)
    assert again.encoded == 0


def test_a_killed_cold_encode_loses_at_most_one_shard(texts, tmp_path):
    """SIGKILL a real cold encode once two shards are on disk: they are intact and read back."""
    (tmp_path / "texts.json").write_text(json.dumps(texts))
    code = (
        "import json, sys\n"
        "from toollat.features.embed import Embedder\n"
        "texts = json.load(open(sys.argv[2]))\n"
        "Embedder(sys.argv[1], batch_size=16, flush_every=32, threads=1).encode(texts)\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "cache"), str(tmp_path / "texts.json")],
                             stderr=subprocess.PIPE, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 300
        while len(shards(tmp_path / "cache")) < 2 and child.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        running = child.poll() is None
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
    assert running, f"the encode ended before a second shard was written: {child.stderr.read().decode()[-2000:]}"
    saved = sum(shard_sizes(tmp_path / "cache"))
    assert 64 <= saved < len(texts) and saved % 32 == 0
    again = Embedder(tmp_path / "cache")
    again.encode(texts)
    assert again.encoded == len(texts) - saved   # every saved vector read back, nothing lost but the rest


@pytest.mark.parametrize("damage", ["truncated", "empty", "not_a_zip", "wrong_shape"])
def test_a_damaged_shard_is_removed_and_its_texts_encoded_again(texts, tmp_path, damage):
    first = Embedder(tmp_path, batch_size=32, flush_every=32)
    vecs = first.encode(texts[:64])
    bad, good = shards(tmp_path)
    if damage == "truncated":      # a write cut short: BadZipFile, which is not an OSError
        bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    elif damage == "empty":
        bad.write_bytes(b"")
    elif damage == "not_a_zip":
        bad.write_bytes(os.urandom(4096))
    else:
        np.savez(bad.open("wb"), keys=np.zeros(3, "S16"), vecs=np.zeros((3, 10), np.float16))
    again = Embedder(tmp_path)
    np.testing.assert_allclose(again.encode(texts[:64]), vecs, atol=2e-3)
    assert again.encoded == 32 and again.dropped_shards == 1
    assert not bad.exists() and good.exists()


def test_a_damaged_shard_does_not_fail_predict(tmp_path, small_bundle):
    """A MiniLM bundle predicting through a cache that holds a truncated shard (the shipped
    default embeds with the static embedder, which has no disk cache)."""
    from toollat.predictor import Predictor

    first = Embedder(tmp_path, flush_every=1)
    first.encode(["Bash: ls -la"])
    (shard,) = shards(tmp_path)
    shard.write_bytes(shard.read_bytes()[:100])
    p = Predictor.load(small_bundle, embedder=Embedder(tmp_path))
    pred = p.predict({"session_id": "s", "tool": "Bash", "args": {"command": "pytest -q tests"}})
    assert pred.p50_ms >= 0
    assert not shard.exists()


def test_stale_temporary_files_are_removed_on_load(tmp_path):
    cache = tmp_path / "embeddings" / MODEL_NAME
    cache.mkdir(parents=True)
    stale, fresh = cache / ".tmp-dead.npz", cache / ".tmp-writing.npz"
    stale.write_bytes(b"left by a killed process")
    fresh.write_bytes(b"another process is writing this one")
    old = time.time() - 120
    os.utime(stale, (old, old))
    Embedder(tmp_path).encode(["Bash: ls"])
    assert not stale.exists() and fresh.exists()


def test_shard_count_stays_bounded(texts, tmp_path):
    e = Embedder(tmp_path, batch_size=4, flush_every=4, max_shards=8)
    for start in range(0, 100, 4):      # a server meeting four new commands at a time
        e.encode(texts[start:start + 4])
        assert len(shards(tmp_path)) <= 8
    e.flush()
    assert sum(shard_sizes(tmp_path)) == 100
    again = Embedder(tmp_path)
    again.encode(texts[:100])
    assert again.encoded == 0


def test_many_shards_are_merged_on_load(texts, tmp_path):
    first = Embedder(tmp_path, batch_size=4, flush_every=4, max_shards=1000)
    for start in range(0, 80, 4):
        first.encode(texts[start:start + 4])
    assert len(shards(tmp_path)) == 20
    again = Embedder(tmp_path, max_shards=8, max_cached=50)
    again.encode(texts[60:80])            # the newest texts are kept
    assert again.encoded == 0
    assert shard_sizes(tmp_path) == [50]  # one shard, bounded by max_cached


def test_a_key_ending_in_nul_is_found_again(tmp_path):
    """One text in 256 has a cache key ending in a NUL byte; it must be read back like any other."""
    from toollat.core.hashing import digest

    text = next(t for t in (f"Bash: pytest -q tests/test_{i}.py" for i in range(5000))
                if digest(MODEL_NAME + "\x1f" + t).endswith(b"\x00"))
    Embedder(tmp_path, flush_every=1).encode([text])
    again = Embedder(tmp_path)
    again.encode([text])
    assert again.encoded == 0
