"""ToolLatencyModel: one conformance suite over every model kind, configs that compose (and bad
ones that fail with a message), the configured target honoured by the history, the shipped
default bundle, and the format-version policy. Each test costs seconds (small real slices)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import FAST_MODEL, small_config
from toollat.bundle import BundleError
from toollat.config import compose
from toollat.estimator import NotFittedError, ToolLatencyModel
from toollat.paths import REPO_ROOT
from toollat.core.units import P_LONG_COLUMN, prediction_columns

KINDS = {
    "lgbm": FAST_MODEL,
    "knn": {"kind": "knn"},
    "ensemble": {"kind": "ensemble", "members": {"lgbm": FAST_MODEL, "knn": {"kind": "knn"}},
                 "weights": {"lgbm": 0.8, "knn": 0.2}},
}


@pytest.fixture(scope="module")
def slice_split(small_split):
    """A few hundred sessions' worth of calls: enough to fit, small enough to take seconds."""
    train, test = small_split
    keep = train["session_id"].isin(train["session_id"].drop_duplicates().iloc[:40])
    return train[keep].reset_index(drop=True), test.iloc[:400].reset_index(drop=True)


@pytest.fixture(scope="module", params=sorted(KINDS))
def fitted(request, slice_split, embedder):
    train, _ = slice_split
    m = ToolLatencyModel.from_config(small_config(model=KINDS[request.param]), embedder)
    return m.fit(train)


def test_predictions_have_named_levels_and_do_not_cross(fitted, slice_split):
    _, test = slice_split
    out = fitted.predict(test)
    cols = prediction_columns(fitted.levels_)
    assert list(out.columns) == cols + [P_LONG_COLUMN] and len(out) == len(test)
    assert (out.index == test.index).all()
    q = out[cols].to_numpy()
    assert np.isfinite(q).all() and (q > 0).all()
    assert (np.diff(q, axis=1) >= 0).all(), "quantiles cross"
    p = out[P_LONG_COLUMN].to_numpy()
    assert ((0 <= p) & (p <= 1)).all()


def test_predict_is_pure(fitted, slice_split):
    _, test = slice_split
    before = test.copy()
    a = fitted.predict(test)
    b = fitted.predict(test)
    assert a.equals(b) and test.equals(before)


def test_save_load_round_trip_gives_equal_predictions(fitted, slice_split, embedder, tmp_path):
    _, test = slice_split
    path = fitted.save(tmp_path / "b")
    loaded = ToolLatencyModel.load(path, embedder)
    assert loaded.get_params() == json.loads(json.dumps(fitted.get_params()))
    np.testing.assert_array_equal(loaded.predict(test).to_numpy(), fitted.predict(test).to_numpy())


def test_unfitted_model_raises(slice_split):
    m = ToolLatencyModel()
    with pytest.raises(NotFittedError, match="not fitted"):
        m.predict(slice_split[1])
    with pytest.raises(NotFittedError):
        m.save("/tmp/never-written")


def test_constructor_takes_hyper_parameters_only():
    m = ToolLatencyModel(target="internal", tools={"families": ["shell"], "names": None})
    assert m.get_params()["target"] == "internal" and not hasattr(m, "model_")
    assert set(m.get_params()) == set(ToolLatencyModel.PARAMS)


@pytest.mark.parametrize("params, match", [
    ({"target": "cpu"}, "target must be one of"),
    ({"levels": [0.9, 0.1]}, "levels must be increasing"),
    ({"levels": [0.1, 0.9]}, "include 0.5"),
    ({"features": {"pca_dim": 8}}, "unknown feature settings"),
    ({"model": {"kind": "forest"}}, "unknown model kind"),
    ({"hints": {"breakeven_s": float("nan")}}, "finite"),
])
def test_bad_hyper_parameters_fail_at_fit_with_a_message(params, match, slice_split):
    with pytest.raises(ValueError, match=match):
        ToolLatencyModel(**params).fit(slice_split[0])


@pytest.mark.parametrize("exp", sorted(p.stem for p in (REPO_ROOT / "conf" / "exp").glob("*.yaml")))
def test_every_experiment_composes_into_a_model(exp):
    cfg = compose([f"+exp={exp}"])
    m = ToolLatencyModel.from_config(cfg)
    m._checked()
    assert m.name == cfg["name"]


@pytest.mark.parametrize("override, match", [
    ("features.pca_dim=8", "pca_dim"),
    ("model=forest", "forest"),
    ("+exp=nope", "nope"),
])
def test_bad_overrides_fail_with_a_message(override, match):
    with pytest.raises(Exception, match=match):
        compose([override])


def test_history_replays_the_configured_target(small_split, embedder):
    """With target=internal, an earlier call's runner-reported time reaches the later call's
    history features; with target=wall it does not (the wall time does)."""
    from toollat.features.pipeline import FeatureConfig, FeaturePipeline

    train, _ = small_split
    sess = train.groupby("session_id").filter(lambda g: len(g) >= 6)
    s = sess[sess["session_id"] == sess["session_id"].iloc[0]].sort_values("emitted_at").reset_index(drop=True)
    cfg = FeatureConfig(embeddings=False, memory=False)
    col = "x_all_max"
    for target, changes in (("internal", True), ("wall", False)):
        pipe = FeaturePipeline(cfg, None, target=target)
        pipe.fit_transform(train)
        base = s.copy()
        base["internal_ms"] = 5.0
        other = base.copy()
        other.loc[:2, "internal_ms"] = 50_000.0
        a, b = pipe.transform(base), pipe.transform(other)
        j = pipe.names.index(col)
        assert (not np.array_equal(a[:, j], b[:, j], equal_nan=True)) == changes, target


def test_shipped_default_bundle_loads_and_card_has_no_absolute_path():
    from toollat.bundle import resolve

    m = ToolLatencyModel.load("default")
    assert m.name == "default" and m.version_
    text = (resolve("default") / "card.json").read_text()

    def strings(v):
        if isinstance(v, dict):
            for k, x in v.items():
                yield str(k)
                yield from strings(x)
        elif isinstance(v, list):
            for x in v:
                yield from strings(x)
        elif isinstance(v, str):
            yield v

    bad = [s for s in strings(json.loads(text)) if s.startswith(("/", "~")) or ":\\" in s or "/home/" in s
           or "/Users/" in s or "sqlite:" in s or "file:" in s]
    assert bad == [], bad[:5]


def test_old_format_names_the_version_that_reads_it(small_bundle, tmp_path):
    import shutil

    dst = tmp_path / "old"
    shutil.copytree(small_bundle, dst)
    card = json.loads((dst / "card.json").read_text())
    card["format_version"] = 1
    (dst / "card.json").write_text(json.dumps(card))
    with pytest.raises(BundleError, match=r"toollat 0\.1\.x reads it"):
        ToolLatencyModel.load(dst)


def test_wheel_holds_the_default_bundle(tmp_path):
    import subprocess
    import sys
    import zipfile

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(REPO_ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    wheel = next(tmp_path.glob("toollat-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {n.split("/")[-1] for n in names if n.startswith("toollat/bundles/default/")}
    on_disk = {p.name for p in (REPO_ROOT / "toollat" / "bundles" / "default").iterdir()}
    assert shipped == on_disk and "card.json" in shipped
    assert "toollat/mlflow_model.py" in names and "toollat/estimator.py" in names
    assert not any(n.startswith(("tests/", "experiments/")) for n in names)
