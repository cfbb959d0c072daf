"""The HTTP API (DESIGN.md contract), a thin layer over one in-process ``Predictor``.

- ``POST /v1/predict``  ``{"calls": [...]}`` -> ``{"model": {...}, "predictions": [...]}``
- ``POST /v1/observe``  ``{"observations": [{"call_id" | "session_id"+"tool", "latency_ms"}]}``
- ``GET /healthz``, ``GET /v1/model`` (with running calibration), OpenAPI at ``/docs``

Bad input gets a 4xx with a reason and the server keeps serving: pydantic validates every
field (422), a body that is not JSON or not UTF-8 is a 400, a body over ``max_body_bytes`` a
413, and when a token is set every ``/v1`` route wants ``Authorization: Bearer <token>`` (401).
Session history lives in the one process (so run a single worker), bounded by the Predictor.
Each request is logged as one JSON line (``toollat.access``).
"""
from __future__ import annotations

import hmac
import json
import logging
import time
from typing import Any, Literal

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from toollat.predictor import MAX_LATENCY_MS, Predictor

access_log = logging.getLogger("toollat.access")
MAX_BATCH = 100_000


class CallIn(BaseModel):
    """One tool call, as emitted. Only ``tool`` is required."""

    model_config = ConfigDict(extra="ignore")
    tool: str = Field(min_length=1, max_length=200, description="Tool name, e.g. Bash, Read, exec_command")
    args: dict[str, Any] | str | None = Field(default=None, description="Tool input (object, or JSON text)")
    call_id: str | None = Field(default=None, max_length=200)
    session_id: str | None = Field(default=None, max_length=200)
    agent: str | None = None
    model: str | None = None
    permission_mode: str | None = None
    emitted_at: float | str | None = Field(default=None, description="epoch ms or ISO-8601; default: now")
    turn_started_at: float | str | None = None
    prev_turn_ended_at: float | str | None = None
    turn_index: int | None = None
    context_tokens: float | None = Field(default=None, ge=0)
    parallel_group: str | None = None
    poll_of: str | None = None


class PredictRequest(BaseModel):
    calls: list[CallIn] = Field(min_length=1, max_length=MAX_BATCH)


class HintOut(BaseModel):
    action: Literal["keep", "offload", "drop"]
    ttl_ms: float = Field(description="keep: GPU TTL; offload: host-memory TTL; drop: 0")
    then: Literal["offload", "drop"] | None = Field(default=None, description="keep: what to do when the TTL expires")


class PredictionOut(BaseModel):
    call_id: str | None
    p50_ms: float
    p90_ms: float
    quantiles: dict[str, float]
    p_long: float
    hint: HintOut
    fallback: str | None = None


class PredictResponse(BaseModel):
    model: dict[str, Any]
    predictions: list[PredictionOut]


class Observation(BaseModel):
    model_config = ConfigDict(extra="ignore")
    call_id: str | None = Field(default=None, max_length=200)
    session_id: str | None = Field(default=None, max_length=200)
    tool: str | None = Field(default=None, max_length=200)
    latency_ms: float = Field(ge=0, le=MAX_LATENCY_MS, description="observed blocking time, ms (at most a week)")
    is_error: bool = False

    @model_validator(mode="after")
    def identified(self) -> "Observation":
        if self.call_id is None and (self.session_id is None or self.tool is None):
            raise ValueError("an observation needs call_id, or session_id and tool")
        return self


class ObserveRequest(BaseModel):
    observations: list[Observation] = Field(min_length=1, max_length=MAX_BATCH)


class ObserveResponse(BaseModel):
    observed: int
    unknown: list[int] = Field(description="indices of observations whose call was never predicted")


_predict_adapter = TypeAdapter(PredictRequest)
_observe_adapter = TypeAdapter(ObserveRequest)


def _error(status: int, reason: str, detail: Any = None) -> JSONResponse:
    body = {"error": reason}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status)


def _validation_detail(e: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(x["loc"]), "msg": x["msg"], "type": x["type"]} for x in e.errors(include_url=False, include_input=False)][:20]


def _request_body(model: type[BaseModel]) -> dict[str, Any]:
    """OpenAPI for a body the endpoint reads itself (bytes -> orjson -> pydantic), so /docs shows it."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": model.model_json_schema(ref_template="#/components/schemas/{model}")}}}}


def create_app(predictor: Predictor, token: str | None = None, max_body_bytes: int = 16 * 1024 * 1024) -> FastAPI:
    app = FastAPI(title="toollat", version=predictor.model_version,
                  description="Predicts how long a coding agent's tool call will block, with a KV-cache hint.")
    model_ref = {"name": predictor.name, "version": predictor.model_version}

    @app.middleware("http")
    async def guard(request: Request, call_next):
        start = time.perf_counter()
        response = await _guarded(request, call_next)
        access_log.info(json.dumps({
            "ts": round(time.time(), 3), "method": request.method, "path": request.url.path,
            "status": response.status_code, "ms": round((time.perf_counter() - start) * 1000, 3),
            "client": request.client.host if request.client else None,
        }))
        return response

    async def _guarded(request: Request, call_next):
        if token is not None and request.url.path.startswith("/v1"):
            given = request.headers.get("authorization", "")
            if not given.startswith("Bearer ") or not hmac.compare_digest(given[7:].encode(), token.encode()):
                return _error(401, "missing or wrong bearer token")
        length = request.headers.get("content-length")
        if length is not None:
            try:
                if int(length) > max_body_bytes:
                    return _error(413, f"body larger than {max_body_bytes} bytes")
            except ValueError:
                return _error(400, "bad Content-Length")
        return await call_next(request)

    async def read_request(request: Request, adapter: TypeAdapter) -> Any:
        """The body, parsed and validated; _BadRequest (with the reason) otherwise."""
        body = bytearray()
        async for chunk in request.stream():
            body += chunk
            if len(body) > max_body_bytes:
                raise _BadRequest(413, f"body larger than {max_body_bytes} bytes")
        if not body:
            raise _BadRequest(400, "empty body: send a JSON object")
        try:
            data = orjson.loads(bytes(body))
        except orjson.JSONDecodeError as e:
            raise _BadRequest(400, f"body is not valid UTF-8 JSON: {e}") from None
        try:
            return adapter.validate_python(data)
        except ValidationError as e:
            raise _BadRequest(422, "invalid request", _validation_detail(e)) from None

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError):
        return _error(422, "invalid request", [{"loc": list(x["loc"]), "msg": x["msg"]} for x in exc.errors()][:20])

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "model": predictor.name, "version": predictor.model_version}

    @app.get("/v1/model")
    def model_info() -> dict[str, Any]:
        return predictor.model_info()

    @app.post("/v1/predict", response_model=PredictResponse, openapi_extra=_request_body(PredictRequest))
    async def predict(request: Request):
        try:
            req = await read_request(request, _predict_adapter)
            preds = predictor.predict_batch([c.model_dump(exclude_none=True) for c in req.calls])
        except _BadRequest as e:
            return _error(e.status, e.reason, e.detail)
        except ValueError as e:
            return _error(422, str(e))
        return Response(orjson.dumps({"model": model_ref, "predictions": [p.to_dict() for p in preds]}),
                        media_type="application/json")

    @app.post("/v1/observe", response_model=ObserveResponse, openapi_extra=_request_body(ObserveRequest))
    async def observe(request: Request):
        try:
            req = await read_request(request, _observe_adapter)
        except _BadRequest as e:
            return _error(e.status, e.reason, e.detail)
        unknown = [i for i, o in enumerate(req.observations)
                   if not predictor.observe(call_id=o.call_id, latency_ms=o.latency_ms, session_id=o.session_id,
                                            tool=o.tool, is_error=o.is_error)]
        return Response(orjson.dumps({"observed": len(req.observations) - len(unknown), "unknown": unknown}),
                        media_type="application/json")

    return app


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str, detail: Any = None):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.detail = detail


def serve(predictor: Predictor, host: str = "127.0.0.1", port: int = 8700, token: str | None = None,
          max_body_bytes: int = 16 * 1024 * 1024, log_level: str = "info") -> None:
    """Run the API with uvicorn (one worker: session history lives in this process)."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    access_log.setLevel(logging.INFO if log_level in ("info", "debug") else logging.WARNING)
    uvicorn.run(create_app(predictor, token, max_body_bytes), host=host, port=port, log_level=log_level,
                access_log=False, loop="uvloop", http="httptools")
