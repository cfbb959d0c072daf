"""Request and response bodies of the HTTP API, as pydantic models (they are also its OpenAPI schema).

Types are strict, so the schema and the validation agree both ways: a number field takes a JSON
number and not ``true`` or ``"5"``, a boolean takes ``true``/``false`` and not ``0``, a string
takes a string. ``args`` is a JSON object (the Python ``Predictor`` also takes JSON text; over
HTTP the client parses it), bounded in nesting depth, because a client's nesting must not reach
the recursion limit of the code that walks it. The envelopes (``PredictRequest``,
``ObserveRequest``) refuse fields they do not know (422), so a misspelt option is not silently
ignored; a call or an observation ignores extra fields, as calls copied from agent logs carry them.
How many calls or observations one request may hold is the server's limit alone
(``ServerLimits.max_calls`` / ``max_observations``, checked before validation: 413).
"""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from toollat.core.call import MAX_ARGS_DEPTH, json_depth
from toollat.engines import ENGINES
from toollat.predictor import MAX_LATENCY_MS

MAX_ID = 200                 # characters of a call/session id, a tool or agent name
MAX_PATH = 4096              # characters of a working directory
MAX_EPOCH_MS = 1e13          # year 2286: a timestamp beyond it is a unit mistake
MAX_TOKENS = 1e9
MAX_TURN_INDEX = 10_000_000


def _whole_number(v: Any) -> Any:
    # JSON Schema's "integer" includes 3.0, and orjson reads "3.0" as a float.
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


Id = Annotated[str, Field(strict=True, max_length=MAX_ID)]
Name = Annotated[str, Field(strict=True, min_length=1, max_length=MAX_ID)]
Number = Annotated[float, Field(strict=True)]
EpochMs = Annotated[float, Field(strict=True, ge=0, le=MAX_EPOCH_MS, description="epoch ms")]
IsoTime = Annotated[str, Field(strict=True, max_length=64, description="ISO-8601 time")]


class CallIn(BaseModel):
    """One tool call, as emitted. Only ``tool`` is required."""

    model_config = ConfigDict(extra="ignore")
    tool: Name = Field(description="Tool name, e.g. Bash, Read, exec_command")
    args: dict[str, Any] | None = Field(
        default=None, description=f"Tool input as a JSON object (parse JSON text such as Codex arguments on the "
                                  f"client), nested at most {MAX_ARGS_DEPTH} deep")
    call_id: Id | None = None
    session_id: Id | None = None
    agent: Id | None = None
    model: Id | None = None
    permission_mode: Id | None = None
    emitted_at: EpochMs | IsoTime | None = Field(default=None, description="epoch ms or ISO-8601; default: now")
    turn_started_at: EpochMs | IsoTime | None = None
    prev_turn_ended_at: EpochMs | IsoTime | None = None
    turn_index: Annotated[int, Field(strict=True, ge=0, le=MAX_TURN_INDEX), BeforeValidator(_whole_number)] | None = None
    context_tokens: Annotated[float, Field(strict=True, ge=0, le=MAX_TOKENS)] | None = None
    parallel_group: Id | None = None
    poll_of: Id | None = None
    project: Id | None = Field(default=None, description="the project across sessions (features=project bundles)")
    cwd: Annotated[str, Field(strict=True, max_length=MAX_PATH)] | None = Field(
        default=None, description="working directory: its last folder is the project when 'project' is absent")

    @field_validator("args", mode="before")
    @classmethod
    def object_args(cls, v: Any) -> Any:
        if isinstance(v, str):
            # Over HTTP args is an object: JSON text cannot be told from any other string in the
            # schema (OpenAPI 3.1 treats contentMediaType as an annotation), so the two would disagree.
            raise ValueError("'args' must be a JSON object, not text: send the parsed object")
        return v

    @field_validator("args", mode="after")
    @classmethod
    def bounded_args(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        if v is not None and json_depth(v, MAX_ARGS_DEPTH) > MAX_ARGS_DEPTH:
            raise ValueError(f"'args' is nested more than {MAX_ARGS_DEPTH} deep")
        return v


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    calls: list[CallIn] = Field(min_length=1, description="at most the server's limits.max_calls (413 beyond)")
    engine: Literal[ENGINES] | None = Field(  # type: ignore[valid-type]
        default=None, description="Also give each hint in this serving engine's request fields (engine_hint)")
    explain: Annotated[bool, Field(strict=True)] = Field(
        default=False, description="Also give each prediction the expected cost of each plan the hint weighed (costs)")


# An observation names its call by call_id, or by session_id and tool: said in the schema too.
_IDENTIFIED = {"anyOf": [
    {"required": ["call_id"], "properties": {"call_id": {"type": "string"}}},
    {"required": ["session_id", "tool"], "properties": {"session_id": {"type": "string"}, "tool": {"type": "string"}}},
]}


class Observation(BaseModel):
    model_config = ConfigDict(extra="ignore", json_schema_extra=_IDENTIFIED)
    call_id: Id | None = None
    session_id: Id | None = None
    tool: Id | None = None
    latency_ms: Annotated[float, Field(strict=True, ge=0, le=MAX_LATENCY_MS)] = Field(
        description="observed blocking time, ms (at most a week)")
    is_error: Annotated[bool, Field(strict=True)] = False
    observed_at: EpochMs | IsoTime | None = Field(
        default=None, description="when the result arrived: epoch ms or ISO-8601; default: now (as emitted_at)")

    @model_validator(mode="after")
    def identified(self) -> "Observation":
        if self.call_id is None and (self.session_id is None or self.tool is None):
            raise ValueError("an observation needs call_id, or session_id and tool")
        return self


class ObserveRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    observations: list[Observation] = Field(min_length=1, description="at most the server's limits.max_observations (413 beyond)")


# -- responses ---------------------------------------------------------------------------------
class HintOut(BaseModel):
    action: Literal["keep", "offload", "drop"]
    ttl_ms: float = Field(description="keep: GPU TTL; offload: host-memory TTL; drop: 0")
    then: Literal["offload", "drop"] | None = Field(default=None, description="keep: what to do when the TTL expires")


class PlanCosts(BaseModel):
    """Why the hint is what it is: each plan's expected cost over the predicted distribution
    (the rule: GET /v1/model "hints"); the cheapest is the hint."""

    unit: Literal["gpu_hold_s"] = Field(description="GPU-hold seconds: holding this request's KV in GPU memory for one second")
    keep: float = Field(description="the cheapest keep: hold on the GPU for keep_ttl_ms, then keep_then")
    keep_ttl_ms: float
    keep_then: Literal["offload", "drop"]
    offload: float = Field(description="offload to host memory now (and back when the call returns)")
    drop: float = Field(description="drop now and re-prefill when the call returns (breakeven_s)")
    chosen: Literal["keep", "offload", "drop"] = Field(description="the cheapest: the hint's action")


class PredictionOut(BaseModel):
    call_id: str | None
    p50_ms: float
    p90_ms: float
    quantiles: dict[str, float]
    p_long: float
    hint: HintOut
    fallback: Literal["family", "global"] | None = Field(default=None, description="the tool was never seen in training")
    engine_hint: dict[str, Any] | None = Field(default=None, description="the hint in the requested engine's terms")
    costs: PlanCosts | None = Field(default=None, description="with explain: each plan's expected cost")


class ModelRef(BaseModel):
    name: str
    version: str


class PredictResponse(BaseModel):
    model: ModelRef
    predictions: list[PredictionOut]


class ObserveResponse(BaseModel):
    observed: int
    unknown: list[int] = Field(description="indices of observations whose call was never predicted")


class Health(BaseModel):
    status: Literal["ok"]
    model: str
    version: str
    inflight: int = Field(description="/v1 requests being received or predicted now")


class Coverage(BaseModel):
    n: int
    coverage_p50: float | None
    coverage_p90: float | None


class StoreUsage(BaseModel):
    bytes: int = Field(description="upper bound of what the store holds now")
    entries: int
    bound_bytes: int | None = Field(description="its share of the memory budget (null: no budget)")


class MemoryUsage(BaseModel):
    budget_bytes: int | None = Field(description="memory budget for everything clients grow (conf/serving memory.budget_mb)")
    bytes: int = Field(description="sum over the stores")
    session_bound_bytes: int = Field(description="one session's history at most")
    stores: dict[str, StoreUsage] = Field(description="sessions, pending, projects, feature_cache, embedding_cache")


class HintRule(BaseModel):
    breakeven_s: float = Field(description="a re-prefill costs as much as holding the KV on the GPU this long")
    offload_cost_s: float = Field(description="moving the KV to host memory and back, GPU-hold seconds")
    offload_hold_ratio: float = Field(description="host memory per second, relative to GPU memory")
    host_ttl_s: float | None = Field(description="the longest host memory holds a KV (breakeven_s / offload_hold_ratio)")
    min_ttl_ms: float
    unit: Literal["gpu_hold_s"]
    rule: str = Field(description="how the hint is chosen from the predicted distribution, in words")


class ModelInfo(BaseModel):
    name: str
    version: str
    created: str | None = None
    target: Any = None
    tools: Any = None
    levels: list[float]
    hints: HintRule
    held_out_metrics: dict[str, Any] | None = None
    running_calibration: dict[str, Coverage]
    state: dict[str, int]
    memory: MemoryUsage


class ErrorOut(BaseModel):
    error: str = Field(description="what was wrong, in words")
    detail: Any = Field(default=None, description="e.g. the fields that failed validation")
