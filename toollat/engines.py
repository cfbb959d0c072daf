"""A toollat hint in each serving engine's own request fields: vLLM, SGLang, TensorRT-LLM,
Mooncake, Dynamo.

Every engine treats a retention hint as a soft priority under memory pressure (the engine may
still evict), never as a hard pin. One mapping from the hint to a priority level, the same for
every engine and rescaled to each engine's range:

- ``keep`` (GPU TTL T): the highest retention priority, for T (where the engine takes a
  duration); when T lapses the engine's default ageing applies, which is the hint's ``then``
  as far as the engine can express it.
- ``offload`` (host TTL H): a low priority that still lets the engine copy the KV to its host
  tier (TensorRT-LLM: the default priority, above ``secondary_offload_min_priority``), with
  the host retention H where the engine has a field for it (Mooncake's soft pin).
- ``drop``: the lowest priority, no retention, no host copy.

Shapes, where they come from, and what is merged upstream (as of the sources read):

- **vLLM** (``vllm``): the typed ``kv_hints`` request envelope
  ``{"protocol_version", "message_id", "actions": [{"action_id", "action_type",
  "action_version", "payload"}]}`` is merged (vllm-project/vllm PR #53423, RFC #53421;
  plumbing only). The actions are proposals: ``vllm.set_priority`` version ``1.0`` with
  ``priority`` and ``ttl_seconds`` (retain, RFC #51428 "Retain", PR #38514 retention
  directives) and ``vllm.demote`` to ``destination: "cpu"`` (RFC #51428 "Demote"). The
  priority here is 0..100, higher = retained longer.
- **SGLang** (``sglang``): the request's ``priority`` field feeds the radix tree's node
  priority, and ``--radix-eviction-policy priority`` evicts lower priorities first, LRU among
  equals (python/sglang/srt/mem_cache/evict_policy.py ``PriorityStrategy``, radix_cache.py;
  merged, sgl-project/sglang PR #13669). There is no merged TTL: ``retention_seconds`` (PR
  #21045) was closed. The same ``priority`` drives scheduling when
  ``--enable-priority-scheduling`` is on. Offloaded KV reaches host memory through HiCache
  (``--enable-hierarchical-cache``), which the request cannot steer.
- **TensorRT-LLM** (``trtllm``): ``KvCacheRetentionConfig(token_range_retention_configs=
  [TokenRangeRetentionConfig(token_start, token_end, priority, duration_ms)],
  decode_retention_priority, decode_duration_ms, transfer_mode)`` (docs/source/features/
  kvcache.md, cpp/include/tensorrt_llm/executor/executor.h; merged). Priorities 1..100,
  default 35; a block's priority reverts to 35 when ``duration_ms`` lapses; only blocks with
  priority above ``KvCacheConfig.secondary_offload_min_priority`` are offloaded to host memory
  (``host_cache_size``). Run with ``secondary_offload_min_priority=1`` so that ``drop`` (1) is
  never offloaded and ``offload`` (35) is.
- **Mooncake** (``mooncake``): a KV store tier, so the hint says how long the host copy is
  soft-pinned. Upstream ``ReplicateConfig`` has ``replica_num`` and ``with_soft_pin`` with a
  master-wide ``default_kv_soft_pin_ttl`` (30 min; mooncake-store/include/types.h
  ``DEFAULT_KV_SOFT_PIN_TTL_MS``; merged); a per-object ``soft_pin_ttl_ms`` (with
  ``soft_pin_action``) appears in a wire-compatible ``ReplicateConfig`` and ``priority`` is
  the open RFC kvcache-ai/Mooncake #2819: both proposals.
- **Dynamo** (``dynamo``): ``nvext.cache_control = {"type": "ephemeral", "ttl": "<N>s"}``
  pins the prefix on the routed worker for the TTL (ai-dynamo/dynamo PR #6213, merged; ttl
  strings ``"<N>s"``, ``"5m"``, ``"1h"``; behind ``--enable-agentic-cache-control``). Only
  ``keep`` has a field: ``offload`` and ``drop`` send no pin (with KVBM's host tier, unpinned
  blocks evicted from GPU are offloaded by the engine itself), so they look the same on the
  wire.
"""
from __future__ import annotations

import math
import uuid
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:  # the renderers read a hint's and the costs' fields; hints.Hint.for_engine calls them
    from toollat.hints import Hint, HintCosts

Engine = Literal["vllm", "sglang", "trtllm", "mooncake", "dynamo"]
ENGINES: tuple[str, ...] = ("vllm", "sglang", "trtllm", "mooncake", "dynamo")

# Retention priority per action and engine (higher = evicted later; module docstring).
# TensorRT-LLM's 35 is its default, the level its host offload keys on.
PRIORITY: dict[str, dict[str, int]] = {
    "vllm": {"keep": 100, "offload": 35, "drop": 0},
    "sglang": {"keep": 100, "offload": 35, "drop": 0},
    "trtllm": {"keep": 100, "offload": 35, "drop": 1},
    "mooncake": {"keep": 100, "offload": 35, "drop": 0},
}


def _priority(hint: Hint, engine: str) -> int:
    return PRIORITY[engine][hint.action]


def _seconds(ms: float) -> int:
    """Whole seconds, rounded up (a TTL shorter than asked would expire before the resume)."""
    return int(math.ceil(ms / 1000.0))


def host_ttl_ms(hint: Hint, costs: HintCosts) -> float:
    """How long host memory holds the KV under this hint: offload's TTL, or for keep-then-offload
    the host limit ``B / r`` of the costs (0 for drop and keep-then-drop)."""
    if hint.action == "offload":
        return hint.ttl_ms
    if hint.action == "keep" and hint.then == "offload":
        return costs.breakeven_s / costs.offload_hold_ratio * 1000.0 if costs.offload_hold_ratio > 0 else math.inf
    return 0.0


def vllm(hint: Hint, costs: HintCosts, message_id: str | None = None) -> dict[str, Any]:
    """``{"kv_hints": KvHintsEnvelope}`` for a vLLM request body (module docstring)."""
    if hint.action == "offload":
        action = {"action_type": "vllm.demote", "action_version": "1.0",
                  "payload": {"destination": "cpu", "ttl_seconds": _seconds(hint.ttl_ms),
                              "priority": _priority(hint, "vllm")}}
    else:
        payload: dict[str, Any] = {"priority": _priority(hint, "vllm")}
        payload["ttl_seconds"] = _seconds(hint.ttl_ms) if hint.action == "keep" else 0
        action = {"action_type": "vllm.set_priority", "action_version": "1.0", "payload": payload}
    action = {"action_id": f"toollat-{hint.action}", **action}
    return {"kv_hints": {"protocol_version": "0.1", "message_id": message_id or str(uuid.uuid4()),
                         "actions": [action]}}


def sglang(hint: Hint, costs: HintCosts) -> dict[str, Any]:
    """``{"priority": int}`` for an SGLang ``/generate`` request (higher = evicted later)."""
    return {"priority": _priority(hint, "sglang")}


def trtllm(hint: Hint, costs: HintCosts, token_start: int = 0,
           token_end: int | None = None) -> dict[str, Any]:
    """``kv_cache_retention_config`` as the keyword arguments of ``KvCacheRetentionConfig``
    (``duration_ms`` in milliseconds; ``None`` never lapses, used for drop and offload, whose
    priority is at or below the default)."""
    priority = _priority(hint, "trtllm")
    duration = int(math.ceil(hint.ttl_ms)) if hint.action == "keep" else None
    return {"kv_cache_retention_config": {
        "token_range_retention_configs": [{"token_start": token_start, "token_end": token_end,
                                           "priority": priority, "duration_ms": duration}],
        "decode_retention_priority": priority,
        "decode_duration_ms": duration,
        "transfer_mode": "DRAM",
    }}


def mooncake(hint: Hint, costs: HintCosts) -> dict[str, Any]:
    """``{"replicate_config": ReplicateConfig, "priority": int}`` for the host copy's put."""
    host = host_ttl_ms(hint, costs)
    pinned = host > 0
    return {"replicate_config": {"replica_num": 1, "with_soft_pin": pinned,
                                 "soft_pin_ttl_ms": (None if not pinned or math.isinf(host)
                                                     else int(math.ceil(host)))},
            "priority": _priority(hint, "mooncake")}


def dynamo(hint: Hint, costs: HintCosts) -> dict[str, Any]:
    """``{"nvext": {"cache_control": ...}}`` for a Dynamo chat completion; keep only."""
    if hint.action != "keep":
        return {"nvext": {}}
    return {"nvext": {"cache_control": {"type": "ephemeral", "ttl": f"{_seconds(hint.ttl_ms)}s"}}}


_RENDER = {"vllm": vllm, "sglang": sglang, "trtllm": trtllm, "mooncake": mooncake, "dynamo": dynamo}


def render(hint: Hint, engine: str, costs: HintCosts) -> dict[str, Any]:
    """The hint as ``engine``'s request fields; a ``ValueError`` names the known engines."""
    fn = _RENDER.get(str(engine).lower())
    if fn is None:
        raise ValueError(f"unknown engine {engine!r}; known: {', '.join(ENGINES)}")
    return fn(hint, costs)
