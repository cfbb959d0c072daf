"""The HTTP API, a thin layer over one in-process ``Predictor``.

- ``POST /v1/predict``  ``{"calls": [...], "engine"?, "explain"?}`` -> ``{"model": {...}, "predictions": [...]}``
  (with ``explain``, each prediction's ``costs``: the expected cost of keep, offload and drop)
- ``POST /v1/observe``  ``{"observations": [{"call_id" | "session_id"+"tool", "latency_ms", "observed_at"?}]}``
- ``GET /healthz``, ``GET /v1/model`` (running calibration, the hint's rule, the memory budget); OpenAPI at
  ``/openapi.json``, ``/docs`` (Swagger UI served from this server: its assets come from the
  ``swagger-ui-bundle-v2`` package, so the page works on a host without internet access)

Every bad request gets a 4xx with ``{"error": reason, "detail"?}`` and the server keeps serving:
a Host that is not this server is a 421 (a web page the user visits must not reach it by DNS
rebinding), a POST that is not ``application/json`` a 415 (a cross-site form cannot send JSON
without a preflight), a body that is not UTF-8 JSON a 400, one over the size limit a 413, one
not received in time a 408, a field of the wrong type or out of range a 422, and with a token
set every ``/v1`` route wants ``Authorization: Bearer <token>`` (401). Parsing, validation and
the model run in worker threads behind a capacity limiter, so the event loop (and /healthz)
answers while a large batch is predicted (a body under ``inline_bytes`` is answered on the
event loop itself while no thread works: one call's prediction costs less than the hop); too many requests in flight get a 429 with
``Retry-After``, and a request with more never-seen texts than ``max_new_texts``, more calls
than ``max_calls`` or more observations than ``max_observations`` a 413 (split it). The items of
a request are validated ``validate_chunk`` at a time, because one pydantic call holds the GIL
until it returns (10,000 calls at once held it 170 ms, and /healthz with it). Session history
lives in the one process (so run a single worker), within the Predictor's memory budget.
Each request is logged as one JSON line (``toollat.access``).
"""
from __future__ import annotations

import hmac
import logging
import time
from pathlib import Path
from typing import Any, Callable

import anyio
import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic.json_schema import models_json_schema
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from toollat.core.timestamps import to_epoch_ms
from toollat.predictor import Predictor

from .protocol import ServerLimits
from .schemas import (CallIn, ErrorOut, Health, ModelInfo, Observation, ObserveRequest, ObserveResponse,
                      PredictRequest, PredictResponse)

access_log = logging.getLogger("toollat.access")
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


class _BadRequest(Exception):
    def __init__(self, status: int, reason: str, detail: Any = None, headers: dict[str, str] | None = None):
        super().__init__(reason)
        self.status, self.reason, self.detail, self.headers = status, reason, detail, headers


def _error(status: int, reason: str, detail: Any = None, headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"error": reason}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status, headers=headers)


def _validation_detail(e: ValidationError) -> list[dict[str, Any]]:
    return [{"loc": list(x["loc"]), "msg": x["msg"], "type": x["type"]}
            for x in e.errors(include_url=False, include_input=False, include_context=False)][:20]


def _json(data: Any) -> Response:
    return Response(orjson.dumps(data), media_type="application/json")


def _host_name(host: str) -> tuple[str, int | None] | None:
    """``name[:port]`` or ``[v6]:port`` -> (lower-case name, port); None if malformed."""
    if host.startswith("["):
        end = host.find("]")
        if end < 0:
            return None
        name, rest = host[1:end], host[end + 1:]
        if rest and not rest.startswith(":"):
            return None
        port = rest[1:] if rest else None
    else:
        name, _, port = host.partition(":")
        port = port if _ else None
    if port is not None and not (port.isdigit() and len(port) <= 5):
        return None
    return name.lower(), int(port) if port is not None else None


class _Guard:
    """Outermost ASGI layer: Host check, declared body size, one access-log line per request."""

    def __init__(self, app, allowed_hosts: frozenset[str], max_body_bytes: int):
        self.app = app
        self.allowed_hosts = allowed_hosts
        self.max_body_bytes = max_body_bytes

    def _refuse(self, scope) -> JSONResponse | None:
        headers = Headers(scope=scope)
        host = headers.get("host")
        parsed = _host_name(host) if host else None
        server = scope.get("server") or (None, None)
        names = self.allowed_hosts | ({str(server[0]).lower()} if server[0] else set())
        if parsed is None or parsed[0] not in names or (parsed[1] is not None and server[1] is not None
                                                         and parsed[1] != server[1]):
            return _error(421, f"Host {host!r} is not this server: use one of {sorted(names)} with its port")
        length = headers.get("content-length")
        if length is not None:
            if not (length.isdigit() and len(length) < 19):
                return _error(400, "bad Content-Length")
            if int(length) > self.max_body_bytes:
                return _error(413, f"body larger than {self.max_body_bytes} bytes", headers={"Connection": "close"})
        return None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = [500]

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        refusal = self._refuse(scope)
        if refusal is not None:
            await refusal(scope, receive, send_and_note)
        else:
            await self.app(scope, receive, send_and_note)
        if access_log.isEnabledFor(logging.INFO):
            client = scope.get("client")
            access_log.info(orjson.dumps({
                "ts": round(time.time(), 3), "method": scope["method"], "path": scope["path"], "status": status[0],
                "ms": round((time.perf_counter() - start) * 1000, 3), "client": client[0] if client else None,
            }).decode())


# Each list's items validated on their own, a chunk at a time (see the module docstring).
_ITEMS = {"calls": TypeAdapter(list[CallIn]), "observations": TypeAdapter(list[Observation])}


def _responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    why = {400: "Body not JSON, or not UTF-8, or bad Content-Length", 401: "Missing or wrong bearer token",
           408: "Body not received in time",
           413: "Body too large, or too many calls, observations or never-seen call texts in one request: split it",
           415: "Content-Type is not application/json", 421: "Host header is not this server",
           422: "A field is missing, of the wrong type or out of range", 429: "Too many requests in flight; retry after Retry-After seconds"}
    return {c: {"model": ErrorOut, "description": why[c]} for c in codes}


def _body(name: str) -> dict[str, Any]:
    """OpenAPI for a body the endpoint reads itself (bytes -> orjson -> pydantic, in a worker thread)."""
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": {"$ref": f"#/components/schemas/{name}"}}}}}


def create_app(predictor: Predictor, token: str | None = None, max_body_bytes: int | None = None,
               limits: ServerLimits | None = None, allowed_hosts: tuple[str, ...] = ()) -> FastAPI:
    """The app. ``allowed_hosts``: Host names accepted besides loopback and the address bound."""
    limits = limits or ServerLimits()
    if max_body_bytes is not None:
        limits = ServerLimits(**{**vars(limits), "max_body_bytes": max_body_bytes})
    app = FastAPI(title="toollat", version=predictor.model_version,
                  description="Predicts how long a coding agent's tool call will block, with a KV-cache hint.",
                  docs_url=None, redoc_url=None)  # FastAPI's pages load their assets from a CDN: _add_docs
    model_ref = {"name": predictor.name, "version": predictor.model_version}
    workers = anyio.CapacityLimiter(limits.model_threads)
    inflight = [0]  # only touched on the event loop
    caps = {"calls": limits.max_calls, "observations": limits.max_observations}

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException):
        return _error(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None))

    async def read_body(request: Request) -> bytes:
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind != "application/json":
            raise _BadRequest(415, f"Content-Type must be application/json, got {kind or 'none'!r}")
        body = bytearray()
        try:
            with anyio.fail_after(limits.body_timeout_s):
                async for chunk in request.stream():
                    body += chunk
                    if len(body) > limits.max_body_bytes:
                        raise _BadRequest(413, f"body larger than {limits.max_body_bytes} bytes",
                                          headers={"Connection": "close"})
        except TimeoutError:
            raise _BadRequest(408, f"body not received within {limits.body_timeout_s:g} s",
                              headers={"Connection": "close"}) from None
        except ClientDisconnect:
            raise _BadRequest(400, "client disconnected before sending the body") from None
        if not body:
            raise _BadRequest(400, "empty body: send a JSON object")
        return bytes(body)

    def parse(body: bytes, model: type[BaseModel], items: str) -> Any:
        """The body as ``model``; its list ``items`` counted first (413 past its cap) and
        validated a chunk at a time, so the event loop gets the GIL between chunks."""
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError as e:
            raise _BadRequest(400, f"body is not valid UTF-8 JSON: {e}") from None
        listed = data.get(items) if isinstance(data, dict) else None
        if isinstance(listed, list):
            if len(listed) > caps[items]:
                raise _BadRequest(413, f"{len(listed)} {items} in one request; at most {caps[items]}: split it")
            valid: list[Any] = []
            errors: list[dict[str, Any]] = []
            step = limits.validate_chunk
            for start in range(0, len(listed), step):
                try:
                    valid += _ITEMS[items].validate_python(listed[start:start + step])
                except ValidationError as e:
                    errors += [{**x, "loc": [items, start + x["loc"][0], *x["loc"][1:]]} for x in _validation_detail(e)]
                    if len(errors) >= 20:
                        break
            if errors:
                raise _BadRequest(422, "invalid request", errors[:20])
            data = {**data, items: valid}  # validated instances are taken as they are below
        try:
            return model.model_validate(data)
        except ValidationError as e:
            raise _BadRequest(422, "invalid request", _validation_detail(e)) from None

    async def handle(request: Request, work: Callable[[bytes], Response]) -> Response:
        """Admission, body, then the work in a worker thread; every refusal a 4xx with a reason."""
        if inflight[0] >= limits.max_inflight:
            return _error(429, f"{limits.max_inflight} requests in flight: retry shortly", headers={"Retry-After": "1"})
        inflight[0] += 1
        try:
            body = await read_body(request)
            if len(body) <= limits.inline_bytes and workers.borrowed_tokens == 0:
                # a call or a few: answered here, no thread hop (which cost more than the
                # prediction); with work in a thread it would wait for the predictor's lock
                # on the event loop, so then it queues like the rest
                return work(body)
            return await anyio.to_thread.run_sync(work, body, limiter=workers)
        except _BadRequest as e:
            return _error(e.status, e.reason, e.detail, e.headers)
        finally:
            inflight[0] -= 1

    def predict_work(body: bytes) -> Response:
        req: PredictRequest = parse(body, PredictRequest, "calls")
        try:  # arguments cut to what the features read, before anything else looks at them
            calls = predictor.parse([c.model_dump(exclude_none=True) for c in req.calls])
        except ValueError as e:
            raise _BadRequest(422, str(e)) from None
        new = predictor.unseen(calls) if len(calls) > limits.max_new_texts else 0
        if new > limits.max_new_texts:
            raise _BadRequest(413, f"{new} calls with never-seen text; at most {limits.max_new_texts} per request: "
                                   "split the batch")
        preds = predictor.predict_calls(calls, explain=req.explain)
        out = [p.to_dict() for p in preds]
        if req.engine is not None:
            for d, p in zip(out, preds):
                d["engine_hint"] = p.hint.for_engine(req.engine, predictor.costs)
        return _json({"model": model_ref, "predictions": out})

    def observe_work(body: bytes) -> Response:
        req: ObserveRequest = parse(body, ObserveRequest, "observations")
        unknown = [i for i, o in enumerate(req.observations)
                   if not predictor.observe(call_id=o.call_id, latency_ms=o.latency_ms, session_id=o.session_id,
                                            tool=o.tool, is_error=o.is_error, at_ms=to_epoch_ms(o.observed_at))]
        return _json({"observed": len(req.observations) - len(unknown), "unknown": unknown})

    @app.get("/healthz", response_model=Health, responses=_responses(421))
    def healthz():
        return _json({"status": "ok", "model": predictor.name, "version": predictor.model_version, "inflight": inflight[0]})

    deps = []
    v1_codes = [421]
    if token is not None:
        bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <token> (serve --token)")

        def require_token(cred: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
            if cred is None or not hmac.compare_digest(cred.credentials.encode(), token.encode()):
                raise HTTPException(401, "missing or wrong bearer token", headers={"WWW-Authenticate": "Bearer"})

        deps.append(Depends(require_token))
        v1_codes.append(401)
    v1 = APIRouter(prefix="/v1", dependencies=deps)
    post_codes = (*v1_codes, 400, 408, 413, 415, 422, 429)

    @v1.get("/model", response_model=ModelInfo, responses=_responses(*v1_codes))
    async def model_info():
        return _json(await anyio.to_thread.run_sync(predictor.model_info, limiter=workers))

    @v1.post("/predict", response_model=PredictResponse, responses=_responses(*post_codes),
             openapi_extra=_body("PredictRequest"))
    async def predict(request: Request):
        return await handle(request, predict_work)

    @v1.post("/observe", response_model=ObserveResponse, responses=_responses(*post_codes),
             openapi_extra=_body("ObserveRequest"))
    async def observe(request: Request):
        return await handle(request, observe_work)

    app.include_router(v1)

    def openapi() -> dict[str, Any]:
        # The request bodies are read by the endpoints themselves, so their schemas are added here.
        if app.openapi_schema is None:
            spec = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            _, defs = models_json_schema([(PredictRequest, "validation"), (ObserveRequest, "validation")],
                                         ref_template="#/components/schemas/{model}")
            schemas = defs.get("$defs", {})
            spec.setdefault("components", {}).setdefault("schemas", {}).update(schemas)
            for path, name in (("/v1/predict", "PredictRequest"), ("/v1/observe", "ObserveRequest")):
                body = spec["paths"][path]["post"]["requestBody"]["content"]["application/json"]
                body["schema"] = schemas[name]  # inline, so /docs shows the fields at a glance
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi
    _add_docs(app)
    app.add_middleware(_Guard, allowed_hosts=LOOPBACK_NAMES | {h.lower() for h in allowed_hosts},
                       max_body_bytes=limits.max_body_bytes)
    return app


# Swagger UI's files /docs references, served by this server (nothing is fetched from elsewhere).
DOCS_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css", "favicon-32x32.png": "image/png"}


def _add_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the ``swagger-ui-bundle-v2`` package (5.x, which renders OpenAPI
    3.1), its assets under ``/docs/assets/``; the online validator badge is off (no request leaves)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import FileResponse
    from swagger_ui_bundle import swagger_ui_path

    assets = Path(str(swagger_ui_path))

    @app.get("/docs", include_in_schema=False)
    async def docs(request: Request):
        root = request.scope.get("root_path", "").rstrip("/")
        return get_swagger_ui_html(openapi_url=f"{root}/openapi.json", title=f"{app.title} - API",
                                   swagger_js_url=f"{root}/docs/assets/swagger-ui-bundle.js",
                                   swagger_css_url=f"{root}/docs/assets/swagger-ui.css",
                                   swagger_favicon_url=f"{root}/docs/assets/favicon-32x32.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    @app.get("/docs/assets/{name}", include_in_schema=False)
    async def docs_asset(name: str):
        if name not in DOCS_ASSETS:  # only the listed files: never a path into the package
            raise HTTPException(404, f"no docs asset {name!r}")
        return FileResponse(assets / name, media_type=DOCS_ASSETS[name], headers={"Cache-Control": "max-age=86400"})


def serve(predictor: Predictor, host: str = "127.0.0.1", port: int = 8700, token: str | None = None,
          max_body_bytes: int | None = None, log_level: str = "info", limits: ServerLimits | None = None,
          allowed_hosts: tuple[str, ...] = ()) -> None:
    """Run the API with uvicorn (one worker: session history lives in this process)."""
    from .protocol import run

    limits = limits or ServerLimits()
    if max_body_bytes is not None:
        limits = ServerLimits(**{**vars(limits), "max_body_bytes": max_body_bytes})
    access_log.setLevel(logging.INFO if log_level in ("info", "debug") else logging.WARNING)
    extra = tuple(allowed_hosts) + ((host,) if host not in ("0.0.0.0", "::", "") else ())
    run(create_app(predictor, token, limits=limits, allowed_hosts=extra), host, port, limits, log_level)
