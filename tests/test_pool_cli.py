"""`toollat replay` as a user runs it (real subprocesses): the JSON headline, the resume costs
overridden on the command line reaching the stall, and bad settings refused with a reason."""
from __future__ import annotations

import json

import pytest

from conftest import run_cli as run


@pytest.fixture(scope="module")
def held_out(small_split, tmp_path_factory):
    _, test = small_split
    path = tmp_path_factory.mktemp("replay") / "held_out.parquet"
    test.to_parquet(path)
    return path


def host_stall_s(row: dict, prefill_tokens_per_s: float) -> float:
    """The load part of a policy's total stall (the rest is re-prefill)."""
    return row["stall_total_s"] - row["reprefill_tokens"] / prefill_tokens_per_s


def test_replay_json_headline_and_overrides(small_bundle, held_out, tmp_path):
    plot = tmp_path / "pool.png"
    d = json.loads(run("replay", "--model", small_bundle, "--data", held_out, "--json", "--plot", plot).stdout)
    h = d["headline"]
    assert {"stall_gap_closed", "stall_gap_closed_per_tool", "middle_pool", "stall_mean_s_middle"} <= set(h)
    assert len(d["pools"]) == 5 and h["middle_pool"] == d["pools"][2]
    assert d["host_tokens"] == [4 * n for n in d["pools"]]            # conf/pool host_ratio 4
    assert d["data"]["config"]["resume"]["kv_bytes_per_token"] == 131072
    assert plot.stat().st_size > 10_000
    # twice the host bandwidth: lru+host (which loads everything on resume) stalls half as long on loads
    fast = json.loads(run("replay", "--model", small_bundle, "--data", held_out, "--json", "--host-gb-s", 128).stdout)
    assert fast["pools"] == d["pools"]
    for a, b in zip(d["policies"]["lru+host"], fast["policies"]["lru+host"]):
        assert host_stall_s(b, 10000) == pytest.approx(host_stall_s(a, 10000) / 2, rel=1e-9, abs=1e-12)
    # no host tier: no lru+host, no stall gap
    none = json.loads(run("replay", "--model", small_bundle, "--data", held_out, "--json", "--host-ratio", 0,
                          "--pool-tokens", d["pools"][0]).stdout)
    assert "lru+host" not in none["policies"] and "stall_gap_closed" not in none["headline"]
    assert none["policies"]["lru"][0]["hit_rate"] == d["policies"]["lru"][0]["hit_rate"]


def test_replay_bad_settings(small_bundle, held_out, tmp_path):
    p = run("replay", "--model", small_bundle, "--data", held_out, "--host-gb-s", 0, check=False)
    assert p.returncode == 2 and "host_gb_s must be a finite number > 0" in p.stderr and "Traceback" not in p.stderr
    p = run("replay", "--model", small_bundle, "--data", held_out, "--host-ratio", 1, "--host-tokens", 5, check=False)
    assert p.returncode == 2 and "not both" in p.stderr
    bad = tmp_path / "pool.yaml"
    bad.write_text("concurrency: 4\nbogus: 1\n")
    p = run("replay", "--model", small_bundle, "--data", held_out, "--config", bad, check=False)
    assert p.returncode == 2 and "unknown settings ['bogus']" in p.stderr
