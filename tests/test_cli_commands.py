"""`toollat predict`, `simulate` and `serve` as a user runs them (real subprocesses)."""
from __future__ import annotations

import json

from conftest import run_cli as run


def test_predict_prints_and_json(small_bundle):
    out = run("predict", "Bash", '{"command": "go test ./..."}', "--model", small_bundle).stdout
    assert out.startswith("Bash: p50") and "hint:" in out and "quantiles:" in out
    d = json.loads(run("predict", "Grep", '{"pattern": "TODO"}', "--model", small_bundle, "--json").stdout)
    assert set(d) >= {"p50_ms", "p90_ms", "quantiles", "p_long", "hint"}


def test_predict_bad_input(small_bundle):
    p = run("predict", "Bash", "{not json", "--model", small_bundle, check=False)
    assert p.returncode == 2 and "not valid JSON" in p.stderr and "Traceback" not in p.stderr
    p = run("predict", "Bash", "[1, 2]", "--model", small_bundle, check=False)
    assert p.returncode == 2 and "must be a JSON object" in p.stderr


def test_simulate_json_headline(small_bundle, small_split, tmp_path):
    _, test = small_split
    data = tmp_path / "held_out.parquet"
    test.to_parquet(data)
    plot = tmp_path / "kv.png"
    d = json.loads(run("simulate", "--model", small_bundle, "--data", data, "--json", "--plot", plot).stdout)
    h = d["headline"]
    for key in ("best_static_ttl_s", "hit_rate_static", "hit_rate_toollat", "hit_rate_oracle",
                "gap_closed_at_equal_storage", "storage_ratio_at_equal_hit_rate"):
        assert key in h
    assert h["hit_rate_oracle"] >= h["hit_rate_toollat"] - 1e-9 and h["hit_rate_oracle"] >= h["hit_rate_static"] - 1e-9
    assert {"static_10s", "per_tool_median", "toollat", "oracle"} <= set(d["policies"])
    assert plot.stat().st_size > 10_000


def test_simulate_unknown_policy(small_bundle, small_split, tmp_path):
    _, test = small_split
    data = tmp_path / "t.parquet"
    test.head(200).to_parquet(data)
    p = run("simulate", "--model", small_bundle, "--data", data, "--policies", "static,magic", "--plot", tmp_path / "x.png", check=False)
    assert p.returncode == 2 and "unknown policies" in p.stderr


def test_serve_refuses_a_foreign_bundle(tmp_path):
    (tmp_path / "card.json").write_text(json.dumps({"format": "pickle-party"}))
    p = run("serve", "--model", tmp_path, "--port", "8799", check=False, timeout=120)
    assert p.returncode == 2 and "not a toollat bundle" in p.stderr
