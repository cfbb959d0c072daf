"""The HTTP API against a real uvicorn server on loopback (a thread in this process)."""
from __future__ import annotations

import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
import uvicorn

from toollat.estimator import ToolLatencyModel
from toollat.predictor import Predictor
from toollat.serving import create_app

TOKEN = "s3cret-token"
MAX_BODY = 4 * 1024 * 1024


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(small_bundle, embedder):
    predictor = Predictor(ToolLatencyModel.load(small_bundle, embedder), max_sessions=1000)
    port = free_port()
    config = uvicorn.Config(create_app(predictor, token=TOKEN, max_body_bytes=MAX_BODY), host="127.0.0.1",
                            port=port, log_level="warning", access_log=False, loop="asyncio")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield base, predictor
    srv.should_exit = True
    thread.join(timeout=10)


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
