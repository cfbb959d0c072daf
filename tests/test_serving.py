"""The HTTP API against a real uvicorn server on loopback (a thread in this process)."""
from __future__ import annotations

import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import httpx
import orjson
import pytest

from conftest import loopback_server
from toollat.estimator import ToolLatencyModel
from toollat.predictor import Predictor
from toollat.serving import ServerLimits, create_app

TOKEN = "s3cret-token"
MAX_BODY = 4 * 1024 * 1024
# Short timeouts so the half-open and slow-body tests take a second; the rest as served.
LIMITS = ServerLimits(max_body_bytes=MAX_BODY, max_new_texts=100, max_inflight=16, header_timeout_s=1.0,
                      body_timeout_s=2.0, max_observations=2000, max_calls=10_000)


@pytest.fixture(scope="module")
def server(small_bundle, embedder):
    predictor = Predictor(ToolLatencyModel.load(small_bundle, embedder), max_sessions=1000)
    with loopback_server(create_app(predictor, token=TOKEN, limits=LIMITS), LIMITS) as base:
        yield base, predictor


@pytest.fixture(scope="module")
def client(server):
    base, _ = server
    with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
        yield c


def test_predict_observe_history(client):
    call = {"tool": "Bash", "args": {"command": "cargo build --release"}, "session_id": "web-1"}
    r1 = client.post("/v1/predict", json={"calls": [{**call, "call_id": "w1"}]})
    assert r1.status_code == 200
    body = r1.json()
    assert body["model"]["name"] == "small" and body["model"]["version"]
    p1 = body["predictions"][0]
    assert set(p1) >= {"call_id", "p50_ms", "p90_ms", "quantiles", "p_long", "hint"}
    assert p1["hint"]["action"] in ("keep", "offload", "drop")
    ob = client.post("/v1/observe", json={"observations": [{"call_id": "w1", "latency_ms": 300_000}]})
    assert ob.json() == {"observed": 1, "unknown": []}
    p2 = client.post("/v1/predict", json={"calls": [{**call, "call_id": "w2"}]}).json()["predictions"][0]
    assert p2["p50_ms"] > 2 * p1["p50_ms"], "the session's history must move the next prediction"
    ob = client.post("/v1/observe", json={"observations": [{"session_id": "web-1", "tool": "Bash", "latency_ms": 5},
                                                            {"call_id": "never-seen", "latency_ms": 5}]})
    assert ob.json() == {"observed": 1, "unknown": [1]}


def test_batch_of_ten_thousand(client):
    calls = [{"tool": ["Bash", "Read", "Grep", "Edit"][i % 4], "args": {"command": f"echo {i % 50}"} if i % 4 == 0 else
              {"file_path": f"/src/m{i % 30}.py"}, "session_id": f"b{i % 100}", "call_id": f"b{i}"} for i in range(10_000)]
    r = client.post("/v1/predict", json={"calls": calls})
    assert r.status_code == 200
    preds = r.json()["predictions"]
    assert len(preds) == 10_000 and [p["call_id"] for p in preds[:3]] == ["b0", "b1", "b2"]
    assert all(p["p50_ms"] > 0 for p in preds)


def test_concurrent_clients(server):
    base, _ = server

    def session(k: int) -> list[int]:
        codes = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60) as c:
            for i in range(25):
                cid = f"c{k}-{i}"
                codes.append(c.post("/v1/predict", json={"calls": [{"tool": "Grep", "args": {"pattern": f"p{i}"},
                                                                    "session_id": f"conc-{k}", "call_id": cid}]}).status_code)
                codes.append(c.post("/v1/observe", json={"observations": [{"call_id": cid, "latency_ms": 40 + i}]}).status_code)
        return codes

    with ThreadPoolExecutor(8) as pool:
        codes = [c for cs in pool.map(session, range(8)) for c in cs]
    assert codes == [200] * 400


def test_unknown_tool_is_marked(client):
    p = client.post("/v1/predict", json={"calls": [{"tool": "QuantumCompile", "args": {}}]}).json()["predictions"][0]
    assert p["fallback"] == "global" and p["p50_ms"] > 0


BAD = [
    ("malformed JSON", b'{"calls": [', 400),
    ("not JSON at all", b"hello", 400),
    ("invalid UTF-8", b'{"calls": [{"tool": "\xff\xfe"}]}', 400),
    ("empty body", b"", 400),
    ("missing calls", b'{"calz": []}', 422),
    ("empty calls", b'{"calls": []}', 422),
    ("missing tool", b'{"calls": [{"args": {}}]}', 422),
    ("tool wrongly typed", b'{"calls": [{"tool": 5}]}', 422),
    ("args wrongly typed", b'{"calls": [{"tool": "Bash", "args": [1, 2]}]}', 422),
    ("args not JSON text", b'{"calls": [{"tool": "Bash", "args": "{oops"}]}', 422),
    ("negative tokens", b'{"calls": [{"tool": "Bash", "context_tokens": -5}]}', 422),
]


@pytest.mark.parametrize("what,body,status", BAD, ids=[b[0] for b in BAD])
def test_bad_predict_requests(client, what, body, status):
    r = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["error"]


@pytest.mark.parametrize("obs", [
    {"call_id": "x", "latency_ms": -1},
    {"call_id": "x", "latency_ms": 1e15},
    {"call_id": "x", "latency_ms": "fast"},
    {"call_id": "x"},
    {"latency_ms": 10},
    {"session_id": "s", "latency_ms": 10},
])
def test_bad_observations(client, obs):
    r = client.post("/v1/observe", json={"observations": [obs]})
    assert r.status_code == 422 and r.json()["error"] == "invalid request"


def test_oversized_body(client):
    big = b'{"calls": [' + b",".join([b'{"tool": "Bash", "args": {"command": "' + b"x" * 1000 + b'"}}'] * 5000) + b"]}"
    assert len(big) > MAX_BODY
    r = client.post("/v1/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413


def test_token_required(server):
    base, _ = server
    call = {"calls": [{"tool": "Bash"}]}
    assert httpx.post(base + "/v1/predict", json=call).status_code == 401
    assert httpx.post(base + "/v1/predict", json=call, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(base + "/v1/predict", json=call, headers={"Authorization": TOKEN}).status_code == 401
    assert httpx.get(base + "/v1/model").status_code == 401
    assert httpx.get(base + "/healthz").status_code == 200


def test_still_serving_after_bad_input(client):
    for _, body, _ in BAD:
        client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert client.get("/healthz").status_code == 200
    assert client.post("/v1/predict", json={"calls": [{"tool": "Read", "args": {"file_path": "a.py"}}]}).status_code == 200


def test_model_info_and_calibration(client):
    for i in range(5):
        client.post("/v1/predict", json={"calls": [{"tool": "Read", "args": {"file_path": "cal.py"}, "session_id": "cal", "call_id": f"cal{i}"}]})
        client.post("/v1/observe", json={"observations": [{"call_id": f"cal{i}", "latency_ms": 3}]})
    info = client.get("/v1/model").json()
    assert info["name"] == "small" and info["levels"] == [0.1, 0.5, 0.9, 0.99]
    assert info["running_calibration"]["read"]["n"] >= 5
    assert 0 <= info["running_calibration"]["*"]["coverage_p90"] <= 1


def test_openapi_docs(client):
    spec = client.get("/openapi.json").json()
    assert {"/v1/predict", "/v1/observe", "/v1/model", "/healthz"} <= set(spec["paths"])
    assert "calls" in str(spec["paths"]["/v1/predict"]["post"]["requestBody"])
    assert client.get("/docs").status_code == 200


# -- strict types, hostile bodies, transport guards ---------------------------------------------
def _nested(depth: int, leaf=1):
    v = leaf
    for _ in range(depth):
        v = {"a": v}
    return v


STRICT = [
    ("observe", {"observations": [{"call_id": "x", "latency_ms": 5, "is_error": 0}]}),
    ("observe", {"observations": [{"call_id": "x", "latency_ms": True}]}),
    ("observe", {"observations": [{"call_id": "x", "latency_ms": "5"}]}),
    ("observe", {"observations": [{"call_id": 7, "latency_ms": 5}]}),
    ("predict", {"calls": [{"tool": "Bash", "context_tokens": True}]}),
    ("predict", {"calls": [{"tool": "Bash", "context_tokens": "100"}]}),
    ("predict", {"calls": [{"tool": "Bash", "turn_index": 1.5}]}),
    ("predict", {"calls": [{"tool": "Bash", "turn_index": False}]}),
    ("predict", {"calls": [{"tool": "Bash", "session_id": 3}]}),
    ("predict", {"calls": [{"tool": "Bash", "emitted_at": True}]}),
    ("predict", {"calls": [{"tool": "Bash", "emitted_at": 1e300}]}),
]


@pytest.mark.parametrize("endpoint,body", STRICT, ids=[str(b)[:60] for _, b in STRICT])
def test_strict_types(client, endpoint, body):
    r = client.post(f"/v1/{endpoint}", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"] == "invalid request" and r.json()["detail"][0]["loc"]


HOSTILE = [
    ("args.command 600 deep", b'{"calls": [{"tool": "Bash", "args": {"command": ' + b'{"a": ' * 600 + b"1" + b"}" * 600 + b"}}]}", 422),
    ("body 1,100 deep", b'{"calls": [{"tool": "Bash", "args": {"c": ' + b"[" * 1100 + b"]" * 1100 + b"}}]}", 400),
    ("args as JSON text 1,000 deep", orjson.dumps({"calls": [{"tool": "Bash", "args": "[" * 1000 + "]" * 1000}]}), 422),
    ("lone surrogate in args text", b'{"calls": [{"tool": "Bash", "args": "{\\"command\\": \\"ls \\\\ud800\\"}"}]}', 422),
    ("lone surrogate in a string", b'{"calls": [{"tool": "Bash", "args": {"command": "ls \\ud800"}}]}', 400),
    ("NaN", b'{"calls": [{"tool": "Bash", "context_tokens": NaN}]}', 400),
    ("huge exponent", b'{"calls": [{"tool": "Bash", "context_tokens": 1e999}]}', 400),
]


@pytest.mark.parametrize("what,body,status", HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_bodies_get_a_4xx_with_a_reason(client, what, body, status):
    r = client.post("/v1/predict", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status, r.text
    assert r.json()["error"]
    assert client.post("/v1/predict", json={"calls": [{"tool": "Read", "args": {"file_path": "a.py"}}]}).status_code == 200


def test_args_depth_within_bound_is_accepted(client):
    r = client.post("/v1/predict", json={"calls": [{"tool": "Bash", "args": {"command": "ls", "opts": _nested(20)}}]})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("ctype", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"])
def test_post_must_be_json(server, ctype):
    base, _ = server
    headers = {"Authorization": f"Bearer {TOKEN}", **({"content-type": ctype} if ctype else {})}
    r = httpx.post(base + "/v1/predict", content=b'{"calls": [{"tool": "Bash"}]}', headers=headers)
    assert r.status_code == 415 and "application/json" in r.json()["error"]
    ok = httpx.post(base + "/v1/predict", content=b'{"calls": [{"tool": "Bash"}]}',
                    headers={**headers, "content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_host_must_be_this_server(server):
    base, _ = server
    port = int(base.rsplit(":", 1)[1])
    for host in ("evil.example", f"evil.example:{port}", f"localhost:{port + 1}", "127.0.0.1.nip.io", "[::1", ""):
        r = httpx.get(base + "/healthz", headers={"Host": host})
        assert r.status_code == 421, (host, r.status_code)
        assert "not this server" in r.json()["error"]
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}", "localhost"):
        assert httpx.get(base + "/healthz", headers={"Host": host}).status_code == 200, host


def _raw(base: str) -> socket.socket:
    host, port = base.removeprefix("http://").split(":")
    s = socket.create_connection((host, int(port)), timeout=10)
    return s


def test_half_open_connections_are_closed(server):
    base, _ = server
    socks = [_raw(base) for _ in range(100)]
    for i, s in enumerate(socks):
        if i % 2:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")  # a head that never ends
    t = time.perf_counter()
    for s in socks:
        assert s.recv(100) == b"", "the server must close a connection whose head does not arrive"
        s.close()
    assert time.perf_counter() - t < LIMITS.header_timeout_s + 5
    assert httpx.get(base + "/healthz").status_code == 200


def test_slow_body_gets_408(server):
    base, _ = server
    port = base.rsplit(":", 1)[1]
    s = _raw(base)
    s.sendall(b"POST /v1/predict HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nAuthorization: Bearer %s\r\n"
              b"content-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"calls\": [" % (port.encode(), TOKEN.encode()))
    head = s.recv(200)
    s.close()
    assert head.startswith(b"HTTP/1.1 408")


def test_huge_head_gets_431(server):
    base, _ = server
    s = _raw(base)
    s.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * (LIMITS.max_header_bytes + 10_000))
    head = s.recv(200)
    s.close()
    assert head.startswith(b"HTTP/1.1 431")


def test_too_many_in_flight_gets_429(server):
    base, _ = server
    port = base.rsplit(":", 1)[1]
    slow = []
    for _ in range(LIMITS.max_inflight):  # each holds a slot while its body does not arrive
        s = _raw(base)
        s.sendall(b"POST /v1/observe HTTP/1.1\r\nHost: 127.0.0.1:%s\r\nAuthorization: Bearer %s\r\n"
                  b"content-type: application/json\r\ncontent-length: 100\r\n\r\n{" % (port.encode(), TOKEN.encode()))
        slow.append(s)
    time.sleep(0.3)
    r = httpx.post(base + "/v1/observe", json={"observations": [{"call_id": "x", "latency_ms": 1}]},
                   headers={"Authorization": f"Bearer {TOKEN}"})
    assert r.status_code == 429 and r.headers["retry-after"] == "1"
    for s in slow:
        assert s.recv(200).startswith(b"HTTP/1.1 408")
        s.close()
    assert httpx.get(base + "/healthz").status_code == 200


def test_cost_limit_on_never_seen_texts(client):
    nonce = uuid.uuid4().hex
    calls = [{"tool": "Bash", "args": {"command": f"./run-{nonce} --case {i}"}} for i in range(LIMITS.max_new_texts + 1)]
    r = client.post("/v1/predict", json={"calls": calls})
    assert r.status_code == 413 and "never-seen" in r.json()["error"]
    assert client.post("/v1/predict", json={"calls": calls[:LIMITS.max_new_texts]}).status_code == 200
    # the same texts again are not new: the whole batch passes now
    assert client.post("/v1/predict", json={"calls": calls[:LIMITS.max_new_texts] * 3}).status_code == 200


def test_healthz_answers_while_a_batch_runs(server):
    """The model works in a thread: /healthz keeps answering while it does. Batches of 10,000
    calls run back to back until a probe has answered from inside one (the server reports the
    request in flight), so the test holds however fast the machine predicts; how fast /healthz
    answers is measured in experiments/hostile_load, not asserted here."""
    base, _ = server
    nonce = uuid.uuid4().hex
    texts = [{"tool": "Bash", "args": {"command": f"pytest tests/test_{nonce}_{i}.py -k case{i}"}}
             for i in range(LIMITS.max_new_texts)]
    calls = (texts * (LIMITS.max_calls // len(texts) + 1))[:LIMITS.max_calls]   # the cap, few never-seen texts
    stop, statuses = threading.Event(), []

    def batches():
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=300) as c:
            while not stop.is_set():
                statuses.append(c.post("/v1/predict", json={"calls": calls}).status_code)

    worker = threading.Thread(target=batches)
    worker.start()
    probes = []
    try:
        with httpx.Client(base_url=base, timeout=60) as c:
            deadline = time.monotonic() + 300      # a bound on a hung server, not a speed requirement
            while time.monotonic() < deadline and not any(p["inflight"] >= 1 for p in probes):
                r = c.get("/healthz")
                assert r.status_code == 200
                probes.append(r.json())
    finally:
        stop.set()
        worker.join()
    assert any(p["inflight"] >= 1 for p in probes), "no probe was answered while a batch was in flight"
    assert statuses and set(statuses) == {200}


def test_openapi_is_self_consistent(client):
    spec = client.get("/openapi.json").json()
    refs = set()

    def walk(o):
        if isinstance(o, dict):
            refs.update(v for k, v in o.items() if k == "$ref")
            for v in o.values():
                walk(v)
        elif isinstance(o, list):
            for v in o:
                walk(v)

    walk(spec)
    defined = {f"#/components/schemas/{k}" for k in spec["components"]["schemas"]}
    assert refs and refs <= defined, refs - defined
    for path in ("/v1/predict", "/v1/observe"):
        op = spec["paths"][path]["post"]
        assert {"200", "400", "401", "408", "413", "415", "421", "422", "429"} <= set(op["responses"])
        assert op["security"] == [{"HTTPBearer": []}]
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    assert "security" not in spec["paths"]["/healthz"]["get"]
    observation = spec["components"]["schemas"]["Observation"]
    assert observation["anyOf"][0]["required"] == ["call_id"]
    assert observation["properties"]["is_error"]["type"] == "boolean"


@pytest.mark.slow
def test_schemathesis_finds_nothing(small_bundle):
    """`st run --checks all` against a real `toollat serve` (the experiments/schemathesis script, ~30 s)."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "schemathesis" / "run.py"
    spec = importlib.util.spec_from_file_location("schemathesis_run", path)
    mod = sys.modules[spec.name] = importlib.util.module_from_spec(spec)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    result = mod.fuzz(str(small_bundle), seed=1)
    assert result.generated > 100 and result.failures == 0 and result.exit_code == 0, result.summary


@pytest.mark.parametrize("engine", ["vllm", "sglang", "trtllm", "mooncake", "dynamo"])
def test_engine_hint(client, engine):
    r = client.post("/v1/predict", json={"calls": [{"tool": "Bash", "args": {"command": "sleep 100"}}], "engine": engine})
    assert r.status_code == 200, r.text
    pred = r.json()["predictions"][0]
    assert isinstance(pred["engine_hint"], dict) and pred["engine_hint"]
    assert "engine_hint" not in client.post("/v1/predict", json={"calls": [{"tool": "Bash"}]}).json()["predictions"][0]


def test_unknown_engine_is_422(client):
    r = client.post("/v1/predict", json={"calls": [{"tool": "Bash"}], "engine": "tgi"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["engine"]


def test_model_info_reports_the_memory_budget(client):
    info = client.get("/v1/model").json()
    memory = info["memory"]
    assert memory["budget_bytes"] == 512 * 2**20 and memory["session_bound_bytes"] == 1024 * 1024
    assert set(memory["stores"]) == {"sessions", "pending", "projects", "feature_cache", "embedding_cache"}
    assert memory["stores"]["sessions"]["entries"] == info["state"]["sessions"] > 0
    assert 0 < memory["bytes"] <= memory["budget_bytes"]
    assert all(0 <= s["bytes"] <= s["bound_bytes"] for s in memory["stores"].values())


def test_too_many_observations_in_one_request_is_413(client):
    obs = [{"session_id": "flood", "tool": f"T{i}", "latency_ms": 5} for i in range(LIMITS.max_observations + 1)]
    r = client.post("/v1/observe", json={"observations": obs})
    assert r.status_code == 413 and "split" in r.json()["error"]
    ok = client.post("/v1/observe", json={"observations": obs[:LIMITS.max_observations]})
    assert ok.status_code == 200 and ok.json()["observed"] == LIMITS.max_observations


def test_too_many_calls_in_one_request_is_413(client):
    r = client.post("/v1/predict", json={"calls": [{"tool": "Read", "args": {"file_path": "a.py"}}] * (LIMITS.max_calls + 1)})
    assert r.status_code == 413 and "split" in r.json()["error"]


def test_an_invalid_item_past_the_first_chunk_is_named(client):
    obs = [{"call_id": f"x{i}", "latency_ms": 5} for i in range(3 * LIMITS.validate_chunk)]
    obs[2 * LIMITS.validate_chunk + 7]["latency_ms"] = "slow"
    r = client.post("/v1/observe", json={"observations": obs})
    assert r.status_code == 422
    assert r.json()["detail"][0]["loc"] == ["observations", 2 * LIMITS.validate_chunk + 7, "latency_ms"]


@pytest.mark.parametrize("endpoint,body", [
    ("predict", {"calls": [{"tool": "Bash"}], "enigne": "vllm"}),
    ("observe", {"observations": [{"call_id": "x", "latency_ms": 5}], "extra": 1}),
])
def test_unknown_request_fields_are_422(client, endpoint, body):
    r = client.post(f"/v1/{endpoint}", json=body)
    assert r.status_code == 422 and r.json()["detail"][0]["type"] == "extra_forbidden"


def test_project_and_cwd_reach_the_predictor(server, client):
    _, predictor = server
    r = client.post("/v1/predict", json={"calls": [{"tool": "Bash", "project": "alpha"},
                                                   {"tool": "Bash", "cwd": "/home/user/src/beta/"}]})
    assert r.status_code == 200
    seen = []
    original = predictor.predict_calls
    predictor.predict_calls = lambda calls, **kw: seen.extend(c.project for c in calls) or original(calls, **kw)
    try:
        client.post("/v1/predict", json={"calls": [{"tool": "Bash", "project": "alpha"},
                                                   {"tool": "Bash", "cwd": "/home/user/src/beta/"}]})
    finally:
        del predictor.predict_calls
    assert seen == ["alpha", "beta"]   # the schema used to drop both fields


def test_a_huge_command_is_answered_quickly_as_its_prefix(server, client):
    """Only the first 64 Ki characters are parsed and embedded (features.max_arg_chars)."""
    base, _ = server
    cmd = f"echo {uuid.uuid4().hex} " + "x" * (3 * 2**20)   # the test server's body limit is 4 MiB
    t = time.perf_counter()
    r = client.post("/v1/predict", json={"calls": [{"tool": "Bash", "args": {"command": cmd}}]})
    assert r.status_code == 200 and time.perf_counter() - t < 1.0
    prefix = client.post("/v1/predict", json={"calls": [{"tool": "Bash", "args": {"command": cmd[:65536 - 1 - 7]}}]})
    assert prefix.json()["predictions"][0]["quantiles"] == r.json()["predictions"][0]["quantiles"]


def test_explain_gives_each_plans_expected_cost(client):
    call = {"tool": "Bash", "args": {"command": "go test ./..."}, "session_id": "why", "call_id": "why1"}
    plain = client.post("/v1/predict", json={"calls": [call]}).json()["predictions"][0]
    assert "costs" not in plain
    client.post("/v1/observe", json={"observations": [{"call_id": "why1", "latency_ms": 41000}]})
    r = client.post("/v1/predict", json={"calls": [{**call, "call_id": "why2"}], "explain": True})
    assert r.status_code == 200, r.text
    p = r.json()["predictions"][0]
    costs = p["costs"]
    assert costs["unit"] == "gpu_hold_s" and costs["chosen"] == p["hint"]["action"]
    assert costs[costs["chosen"]] == min(costs["keep"], costs["offload"], costs["drop"])
    assert costs["drop"] == pytest.approx(30.0)          # the bundle's breakeven_s: drop now is one re-prefill
    if p["hint"]["action"] == "keep":
        assert (costs["keep_ttl_ms"], costs["keep_then"]) == (p["hint"]["ttl_ms"], p["hint"]["then"])
    assert client.post("/v1/predict", json={"calls": [call], "explain": "yes"}).status_code == 422


def test_model_info_states_the_hint_rule(client):
    hints = client.get("/v1/model").json()["hints"]
    assert hints["unit"] == "gpu_hold_s" and hints["host_ttl_s"] == pytest.approx(30.0 / 0.05)
    assert "cheapest plan is the hint" in hints["rule"] and "explain" in hints["rule"]


def test_a_small_request_is_answered_as_in_a_large_one(client):
    """A body under ``inline_bytes`` is answered on the event loop, a larger one in a worker
    thread: the same call gets the same prediction either way."""
    call = {"tool": "Bash", "args": {"command": "go test ./internal/... -run TestCache"}}
    pad = [{"tool": "Read", "args": {"file_path": f"/src/internal/package_{i}/subdir/file_{i}_test.go"}} for i in range(60)]
    assert len(orjson.dumps({"calls": [call]})) <= LIMITS.inline_bytes < len(orjson.dumps({"calls": [call, *pad]}))
    small = client.post("/v1/predict", json={"calls": [call]})
    large = client.post("/v1/predict", json={"calls": [call, *pad]})
    assert small.status_code == large.status_code == 200
    assert small.json()["predictions"][0] == large.json()["predictions"][0]
