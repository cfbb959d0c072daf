"""The default data source resolves in the documented order: explicit paths, the user's own
logs, the shared corpus, the demo corpus (harvested on this machine)."""
from __future__ import annotations

import pytest

from toollat.data import NoDataError, demo_dir, resolve


@pytest.fixture()
def empty_world(tmp_path, monkeypatch):
    """An empty $HOME, no shared corpus, a private cache."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("CLAUDE_CONFIG_DIR", raising=False)
    monkeypatch.delenv("CODEX_HOME", raising=False)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    monkeypatch.setenv("TOOLLAT_SHARED", str(tmp_path / "no-shared"))
    monkeypatch.delenv("TOOLLAT_CORPUS", raising=False)
    monkeypatch.setenv("TOOLLAT_CACHE", str(tmp_path / "cache"))
    return home


def add_local_log(home):
    d = home / ".claude" / "projects" / "-home-me-proj"
    d.mkdir(parents=True)
    (d / "s.jsonl").write_text('{"type": "summary", "sessionId": "s"}\n')


def add_corpus(tmp_path, monkeypatch):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    monkeypatch.setenv("TOOLLAT_CORPUS", str(corpus))
    return corpus


def test_nothing_anywhere_means_demo(empty_world):
    src = resolve("auto")
    assert src.kind == "demo" and src.paths == [demo_dir()]
    assert "no local agent logs and no shared corpus" in src.reason


def test_corpus_before_demo(empty_world, tmp_path, monkeypatch):
    corpus = add_corpus(tmp_path, monkeypatch)
    src = resolve("auto")
    assert src.kind == "corpus" and src.paths == [corpus] and "no local agent logs found" in src.reason


def test_local_logs_before_corpus(empty_world, tmp_path, monkeypatch):
    add_corpus(tmp_path, monkeypatch)
    add_local_log(empty_world)
    src = resolve("auto")
    assert src.kind == "local" and src.paths == [empty_world / ".claude" / "projects"]


def test_explicit_paths_first(empty_world, tmp_path, monkeypatch):
    add_corpus(tmp_path, monkeypatch)
    add_local_log(empty_world)
    f = tmp_path / "calls.parquet"
    f.write_bytes(b"PAR1")
    src = resolve("auto", [f])
    assert src.kind == "explicit" and src.paths == [f]


def test_explicit_kinds_fail_clearly(empty_world, tmp_path):
    with pytest.raises(NoDataError, match="no local agent logs found"):
        resolve("local")
    with pytest.raises(NoDataError, match="shared corpus is not at"):
        resolve("corpus")
    with pytest.raises(NoDataError, match="needs data.paths"):
        resolve("parquet")
    with pytest.raises(NoDataError, match="do not exist"):
        resolve("auto", [tmp_path / "missing.parquet"])
    with pytest.raises(ValueError, match="unknown data kind"):
        resolve("s3")
