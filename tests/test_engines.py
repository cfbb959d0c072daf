"""Engine hint contracts (toollat/engines.py): each engine's payload shape, and that its TTL or
priority follows from the hint, for hints decided from real quantiles."""
from __future__ import annotations

import json

import pytest

from toollat.engines import ENGINES, PRIORITY, render
from conftest import decide
from toollat.hints import Hint, HintCosts

L = (0.1, 0.5, 0.9, 0.99)
C = HintCosts(breakeven_s=30, offload_cost_s=8, offload_hold_ratio=0.05)  # host holds at most 600 s
KEEP = decide(L, [1000, 2000, 3000, 4200], C)             # keep 4.2 s then offload
KEEP_DROP = Hint("keep", 2500.0, "drop")
OFFLOAD = decide(L, [30e3, 60e3, 120e3, 300e3], C)        # offload, host TTL 600 s
DROP = decide(L, [1e6, 2e6, 4e6, 8e6], C)                 # drop


def test_hints_under_test_are_what_they_claim():
    assert (KEEP.action, KEEP.ttl_ms, KEEP.then) == ("keep", 4200.0, "offload")
    assert (OFFLOAD.action, OFFLOAD.ttl_ms) == ("offload", 600_000.0)
    assert DROP.action == "drop"


def test_vllm_kv_hints_envelope():
    p = KEEP.for_engine("vllm", C)
    env = p["kv_hints"]
    assert set(env) == {"protocol_version", "message_id", "actions"} and len(env["actions"]) == 1
    a = env["actions"][0]
    assert set(a) == {"action_id", "action_type", "action_version", "payload"}
    assert (a["action_type"], a["action_version"]) == ("vllm.set_priority", "1.0")
    assert a["payload"] == {"priority": 100, "ttl_seconds": 5}            # 4.2 s rounded up
    off = OFFLOAD.for_engine("vllm", C)["kv_hints"]["actions"][0]
    assert off["action_type"] == "vllm.demote" and off["payload"]["destination"] == "cpu"
    assert off["payload"]["ttl_seconds"] == 600
    drop = DROP.for_engine("vllm", C)["kv_hints"]["actions"][0]
    assert drop["payload"] == {"priority": 0, "ttl_seconds": 0}
    assert env["message_id"] != KEEP.for_engine("vllm", C)["kv_hints"]["message_id"]


def test_sglang_priority_orders_the_actions():
    pri = {h.action: h.for_engine("sglang", C) for h in (KEEP, OFFLOAD, DROP)}
    assert all(set(p) == {"priority"} and isinstance(p["priority"], int) for p in pri.values())
    assert pri["keep"]["priority"] > pri["offload"]["priority"] > pri["drop"]["priority"] == 0


def test_trtllm_retention_config():
    cfg = KEEP.for_engine("trtllm", C)["kv_cache_retention_config"]
    assert set(cfg) == {"token_range_retention_configs", "decode_retention_priority",
                        "decode_duration_ms", "transfer_mode"}
    (r,) = cfg["token_range_retention_configs"]
    assert set(r) == {"token_start", "token_end", "priority", "duration_ms"}
    assert (r["token_start"], r["token_end"], r["priority"], r["duration_ms"]) == (0, None, 100, 4200)
    assert cfg["decode_duration_ms"] == 4200 and cfg["transfer_mode"] == "DRAM"
    off = OFFLOAD.for_engine("trtllm", C)["kv_cache_retention_config"]
    drop = DROP.for_engine("trtllm", C)["kv_cache_retention_config"]
    # offload sits at the engine default (35: copied to host when evicted), drop at the floor (1).
    assert off["token_range_retention_configs"][0]["priority"] == 35
    assert drop["token_range_retention_configs"][0]["priority"] == 1
    assert off["token_range_retention_configs"][0]["duration_ms"] is None
    for p in (r["priority"], 35, 1):
        assert 1 <= p <= 100


def test_mooncake_soft_pin_follows_host_retention():
    keep = KEEP.for_engine("mooncake", C)
    assert keep["replicate_config"] == {"replica_num": 1, "with_soft_pin": True, "soft_pin_ttl_ms": 600_000}
    off = OFFLOAD.for_engine("mooncake", C)
    assert off["replicate_config"]["soft_pin_ttl_ms"] == int(OFFLOAD.ttl_ms)
    for h in (KEEP_DROP, DROP):   # no host copy wanted: not pinned
        rc = h.for_engine("mooncake", C)["replicate_config"]
        assert rc["with_soft_pin"] is False and rc["soft_pin_ttl_ms"] is None
    assert keep["priority"] > off["priority"] > DROP.for_engine("mooncake", C)["priority"]


def test_dynamo_cache_control_ttl():
    assert KEEP.for_engine("dynamo", C) == {"nvext": {"cache_control": {"type": "ephemeral", "ttl": "5s"}}}
    assert Hint("keep", 300_000.0, "offload").for_engine("dynamo")["nvext"]["cache_control"]["ttl"] == "300s"
    assert OFFLOAD.for_engine("dynamo", C) == {"nvext": {}} == DROP.for_engine("dynamo", C)


def test_every_payload_is_strict_json_and_unknown_engine_is_a_clear_error():
    for e in ENGINES:
        for h in (KEEP, KEEP_DROP, OFFLOAD, DROP):
            json.dumps(render(h, e, C), allow_nan=False)
    assert set(PRIORITY) | {"dynamo"} == set(ENGINES)
    with pytest.raises(ValueError, match="unknown engine 'llamacpp'; known: vllm"):
        KEEP.for_engine("llamacpp")
