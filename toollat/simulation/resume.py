"""What a resume costs in time, and the shared-pool replay's settings (``conf/pool/default.yaml``).

**The resume stall.** When a paused request resumes, whatever of its KV is in host memory
must be loaded back to the GPU before its prefill can start, and whatever is gone must be
re-prefilled. The time before it can run again is

    stall = host tokens still to load / host bandwidth + re-prefilled tokens / prefill throughput

(``ResumeCosts.stall_s``), the host bandwidth in tokens per second being the link's bytes per
second over the KV bytes per token. Loads run at the full link bandwidth each (no queueing
between concurrent loads is modelled), and the load precedes the prefill of what is missing
(the prefill attends to the loaded prefix). Fresh tokens (a stream's first context and its
growth) are prefilled under every policy alike and are not part of the stall.

**One owner.** The figures (KV bytes per token, host<->GPU bandwidth, prefill throughput) are
for one stated GPU and model from one public source, and live only in
``conf/pool/default.yaml`` with the pool sizes, the host tier ratio, the concurrency and the
static TTL; ``PoolConfig.load`` reads it (or another file), ``toollat replay`` overrides single
values with flags. The dataclasses have no defaults of their own.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class ResumeCosts:
    """The three figures of the stall, and where they come from (``gpu``, ``model``, ``source``)."""

    kv_bytes_per_token: float
    host_gb_s: float              # host <-> GPU, one direction, 1e9 bytes per second
    prefill_tokens_per_s: float
    gpu: str = ""                 # provenance only: never read by the arithmetic
    model: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        for name in ("kv_bytes_per_token", "host_gb_s", "prefill_tokens_per_s"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"resume costs: {name} must be a finite number > 0, got {v!r}")

    @property
    def host_tokens_per_s(self) -> float:
        """Tokens of KV the host link moves per second."""
        return self.host_gb_s * 1e9 / self.kv_bytes_per_token

    def load_s(self, tokens: float) -> float:
        """Seconds to load ``tokens`` of KV from host memory."""
        return tokens / self.host_tokens_per_s

    def stall_s(self, host_tokens: float, reprefill_tokens: float) -> float:
        """The resume stall (module docstring)."""
        return host_tokens / self.host_tokens_per_s + reprefill_tokens / self.prefill_tokens_per_s

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {"host_tokens_per_s": self.host_tokens_per_s}


@dataclass(frozen=True)
class PoolConfig:
    """``conf/pool/default.yaml``: the resume costs and the replay's workload and pool sizes."""

    resume: ResumeCosts
    concurrency: int
    live_over_pool: tuple[float, ...]   # default GPU pools: live KV / pool
    host_ratio: float                   # host tier = host_ratio x the GPU pool (0: none)
    static_ttl_s: float

    def __post_init__(self) -> None:
        if not (isinstance(self.concurrency, int) and self.concurrency >= 1):
            raise ValueError(f"pool config: concurrency must be an integer >= 1, got {self.concurrency!r}")
        if not self.live_over_pool or any(not (math.isfinite(x) and x > 0) for x in self.live_over_pool):
            raise ValueError(f"pool config: live_over_pool must be numbers > 0, got {list(self.live_over_pool)}")
        if not (math.isfinite(self.host_ratio) and self.host_ratio >= 0):
            raise ValueError(f"pool config: host_ratio must be >= 0, got {self.host_ratio!r}")
        if not (math.isfinite(self.static_ttl_s) and self.static_ttl_s >= 0):
            raise ValueError(f"pool config: static_ttl_s must be >= 0, got {self.static_ttl_s!r}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "PoolConfig":
        """Strict: an unknown or missing setting is an error naming it."""
        d = dict(d or {})
        top = {f.name for f in fields(cls)}
        res = {f.name for f in fields(ResumeCosts)}
        r = dict(d.get("resume") or {})
        unknown = sorted(set(d) - top) + sorted(f"resume.{k}" for k in set(r) - res)
        if unknown:
            raise ValueError(f"pool config: unknown settings {unknown}")
        missing = sorted(set(top) - set(d)) + sorted(
            f"resume.{k}" for k in ("kv_bytes_per_token", "host_gb_s", "prefill_tokens_per_s") if k not in r)
        if missing:
            raise ValueError(f"pool config: missing settings {missing}")
        try:
            resume = ResumeCosts(**{k: (str(v) if k in ("gpu", "model", "source") else float(v)) for k, v in r.items()})
            return cls(resume, int(d["concurrency"]), tuple(float(x) for x in d["live_over_pool"]),
                       float(d["host_ratio"]), float(d["static_ttl_s"]))
        except (TypeError, ValueError) as e:
            raise ValueError(str(e) if str(e).startswith(("pool config", "resume costs")) else f"pool config: {e}") from None

    @classmethod
    def load(cls, path: str | Path | None = None) -> "PoolConfig":
        """``path``, else the checkout's ``conf/pool/default.yaml``."""
        from omegaconf import OmegaConf

        from toollat.paths import REPO_ROOT

        p = Path(path) if path is not None else REPO_ROOT / "conf" / "pool" / "default.yaml"
        if not p.is_file():
            raise ValueError(f"pool config {p} not found" + (
                "" if path is not None else " (toollat installed without its checkout: pass --config FILE, "
                                            "a copy of the repository's conf/pool/default.yaml)"))
        return cls.from_dict(OmegaConf.to_container(OmegaConf.load(p), resolve=True))

    def with_overrides(self, **values: Any) -> "PoolConfig":
        """This config with single values replaced (None leaves one as it is); resume figures
        by their field names (``kv_bytes_per_token``, ``host_gb_s``, ``prefill_tokens_per_s``)."""
        values = {k: v for k, v in values.items() if v is not None}
        res = {k: values.pop(k) for k in list(values) if k in {f.name for f in fields(ResumeCosts)}}
        out = replace(self, **values)
        return replace(out, resume=replace(out.resume, **res)) if res else out

    def to_dict(self) -> dict[str, Any]:
        return {"resume": self.resume.to_dict(), "concurrency": self.concurrency,
                "live_over_pool": list(self.live_over_pool), "host_ratio": self.host_ratio,
                "static_ttl_s": self.static_ttl_s}
