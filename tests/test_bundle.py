"""Bundles: no argument text of training calls, faithful round trip, and refusal of anything
tampered or foreign without running code from it."""
from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest

from toollat.bundle import BundleError, _sha256
from toollat.estimator import ToolLatencyModel
from toollat.evaluation.evaluate import evaluate


def _values(v):
    if isinstance(v, dict):
        for x in v.values():
            yield from _values(x)
    elif isinstance(v, list):
        for x in v:
            yield from _values(x)
    elif isinstance(v, str):
        yield v


def argument_tokens(df) -> set[str]:
    """Distinctive strings from the training calls' argument values: whole short values
    (commands, patterns, queries) and path-, file- or URL-like pieces of longer ones."""
    tokens: set[str] = set()
    for a in df["args"].dropna():
        for v in _values(json.loads(a)):
            if 12 <= len(v) <= 200:
                tokens.add(v)
            tokens.update(t for t in re.findall(r"[A-Za-z0-9_.~-]*[/.][A-Za-z0-9_./~-]+", v) if len(t) >= 12 and re.search(r"[A-Za-z]{3}", t))
    return tokens


def test_bundle_holds_no_argument_text(small_bundle, small_split):
    train, _ = small_split
    tokens = argument_tokens(train)
    assert len(tokens) > 1000
    blob = b"".join(p.read_bytes() for p in small_bundle.iterdir())
    text = blob.decode("latin-1")
    leaked = [t for t in tokens if t in text]
    assert leaked == [], f"argument text found in the bundle: {leaked[:10]}"


def test_round_trip_predictions(small_bundle, small_split, embedder):
    _, test = small_split
    b1 = ToolLatencyModel.load(small_bundle, embedder)
    b2 = ToolLatencyModel.load(small_bundle, embedder)
    r1, r2 = evaluate(b1, test), evaluate(b2, test)
    assert r1["models"]["toollat"] == r2["models"]["toollat"]
    assert set(r1["models"]) == {"toollat", "per_tool_median", "per_command_mean", "global_median"}
    assert r1["models"]["toollat"]["mae_log10"] < r1["models"]["per_tool_median"]["mae_log10"]


@pytest.fixture()
def copy(small_bundle, tmp_path):
    dst = tmp_path / "b"
    shutil.copytree(small_bundle, dst)
    return dst


def test_tampered_file_is_refused(copy, embedder):
    f = copy / "model_q50.txt"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0x01
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum"):
        ToolLatencyModel.load(copy, embedder)


def test_missing_file_and_path_escape_are_refused(copy, embedder):
    card = json.loads((copy / "card.json").read_text())
    card["files"]["../../etc/passwd"] = "0" * 64
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="missing"):
        ToolLatencyModel.load(copy, embedder)


def test_foreign_directories_are_refused(tmp_path, embedder):
    with pytest.raises(BundleError, match="not a model bundle directory"):
        ToolLatencyModel.load(tmp_path / "nothing-here", embedder)
    (tmp_path / "card.json").write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(BundleError, match="not a toollat bundle"):
        ToolLatencyModel.load(tmp_path, embedder)
    (tmp_path / "card.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        ToolLatencyModel.load(tmp_path, embedder)


def test_newer_format_is_refused(copy, embedder):
    card = json.loads((copy / "card.json").read_text())
    card["format_version"] = 99
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match="format version"):
        ToolLatencyModel.load(copy, embedder)


class Boom:
    """If this were unpickled, loading would run code (it must not)."""

    def __reduce__(self):
        return (open, ("/tmp/toollat-bundle-pwned", "w"))


def test_pickled_array_is_not_unpickled(copy, embedder, tmp_path):
    """Even with a matching checksum, a pickled object array is rejected, not executed."""
    target = copy / "memory_stats.npy"
    np.save(target, np.array([Boom()], dtype=object), allow_pickle=True)
    card = json.loads((copy / "card.json").read_text())
    card["files"]["memory_stats.npy"] = _sha256(target)
    (copy / "card.json").write_text(json.dumps(card))
    pwned = tmp_path.parent / "toollat-bundle-pwned"
    with pytest.raises(BundleError, match="cannot read bundle contents"):
        ToolLatencyModel.load(copy, embedder)
    assert not pwned.exists() and not __import__("os").path.exists("/tmp/toollat-bundle-pwned")


def test_garbage_model_text_is_refused(copy, embedder):
    f = copy / "model_q90.txt"
    f.write_text("tree\nnot a lightgbm model\n")
    card = json.loads((copy / "card.json").read_text())
    card["files"]["model_q90.txt"] = _sha256(f)
    (copy / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError):
        ToolLatencyModel.load(copy, embedder)


def _rewrite_card(copy, edit):
    card = json.loads((copy / "card.json").read_text())
    edit(card)
    (copy / "card.json").write_text(json.dumps(card))


@pytest.mark.parametrize("where", ["heads", "long"])
@pytest.mark.parametrize("name", ["../../../etc/passwd", "/etc/passwd"])
def test_card_cannot_name_files_outside_the_bundle(copy, embedder, where, name):
    def edit(card):
        st = card["state"]["model"]["state"]
        if where == "heads":
            st["heads"][0] = name
        else:
            st["long"] = name
    _rewrite_card(copy, edit)
    with pytest.raises(BundleError, match="not a file of the bundle"):
        ToolLatencyModel.load(copy, embedder)


def test_symlinks_and_unlisted_files_are_refused(copy, embedder, tmp_path):
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    (copy / "extra.txt").symlink_to(outside)
    with pytest.raises(BundleError, match="not a regular file"):
        ToolLatencyModel.load(copy, embedder)
    (copy / "extra.txt").unlink()
    (copy / "extra.txt").write_text("not listed")
    with pytest.raises(BundleError, match="not listed in the card"):
        ToolLatencyModel.load(copy, embedder)


def test_a_listed_file_replaced_by_a_symlink_is_refused(copy, embedder, tmp_path):
    target = copy / "model_q50.txt"
    moved = tmp_path / "q50.txt"
    shutil.move(target, moved)
    target.symlink_to(moved)  # same bytes, same checksum, but it points out of the bundle
    with pytest.raises(BundleError, match="not a regular file"):
        ToolLatencyModel.load(copy, embedder)


def test_invalid_card_values_are_refused(copy, embedder):
    _rewrite_card(copy, lambda c: c["params"]["hints"].update(breakeven_s=None))
    with pytest.raises(BundleError, match="finite"):
        ToolLatencyModel.load(copy, embedder)
