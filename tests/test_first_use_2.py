"""What a new user hits, round 2 (issue 23): the shipped default learns while serving, /docs works
without a network, clear errors for the usual first mistakes. Each failed before its fix.
(A training run that keeps an existing bundle, and a clean training log: tests/test_train_output.py.)"""
from __future__ import annotations

import re
import socket
import subprocess
import sys
import threading
import time
from dataclasses import asdict

import httpx
import pytest
import uvicorn
from omegaconf import OmegaConf

from toollat.online import OnlineConfig
from toollat.paths import REPO_ROOT
from toollat.predictor import Predictor
from toollat.serving import ServerLimits, create_app, server_config


def cli(*args, timeout=300, **kw):
    return subprocess.run([sys.executable, "-m", "toollat.cli", *args], capture_output=True, text=True,
                          timeout=timeout, **kw)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def default_server():
    """`toollat serve --model default` as a real uvicorn server on loopback (a thread here)."""
    predictor = Predictor.load("default")
    port = free_port()
    limits = ServerLimits()
    srv = uvicorn.Server(server_config(create_app(predictor, limits=limits), "127.0.0.1", port, limits,
                                       log_level="warning", loop="asyncio"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    for _ in range(400):
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.05)
    yield base
    srv.should_exit = True
    thread.join(timeout=10)


# -- 1. the shipped default learns while serving --------------------------------------------------
def test_online_settings_have_one_owner():
    """conf/online/default.yaml states OnlineConfig's defaults; a bundle without settings gets them."""
    conf = OmegaConf.to_container(OmegaConf.load(REPO_ROOT / "conf" / "online" / "default.yaml"))
    assert conf == asdict(OnlineConfig())
    assert OnlineConfig.from_dict(None) == OnlineConfig() and OnlineConfig().aci_step > 0


def _moved(shifts: dict, family: str) -> bool:
    return family in shifts and shifts[family]["n"] == 1 and any(abs(x) > 0 for x in shifts[family]["shift_log10"])


def test_shipped_default_learns_while_serving_in_process():
    p = Predictor.load("default")
    assert not p.model_info()["online_shifts"]          # nothing observed yet: no shift (but not off: {} not None)
    assert p.model_info()["online_shifts"] is not None
    p.predict({"tool": "Bash", "args": {"command": "go test ./..."}, "session_id": "s1", "call_id": "c1"})
    assert p.observe(call_id="c1", latency_ms=41_000)
    assert _moved(p.model_info()["online_shifts"], "shell")


def test_shipped_default_learns_while_serving_over_http(default_server):
    with httpx.Client(base_url=default_server, timeout=120) as c:
        r = c.post("/v1/predict", json={"calls": [{"tool": "Bash", "args": {"command": "go test ./..."},
                                                   "session_id": "s1", "call_id": "c1"}]})
        assert r.status_code == 200, r.text
        assert c.get("/v1/model").json()["online_shifts"] == {}
        assert c.post("/v1/observe", json={"observations": [{"call_id": "c1", "latency_ms": 41000}]}).json()["observed"] == 1
        assert _moved(c.get("/v1/model").json()["online_shifts"], "shell")


# -- 3. /docs works with no network ---------------------------------------------------------------
def test_docs_page_and_every_asset_it_references_come_from_the_server(default_server):
    with httpx.Client(base_url=default_server, timeout=60) as c:
        page = c.get("/docs")
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        refs = re.findall(r'(?:src|href)\s*=\s*["\']([^"\']+)["\']', page.text) + \
            re.findall(r"url:\s*['\"]([^'\"]+)['\"]", page.text)   # the spec Swagger UI loads
        assert not re.search(r"https?://", page.text), "the page names another host"
        assert len(refs) >= 4 and all(u.startswith("/") and not u.startswith("//") for u in refs), refs
        kinds = {}
        for u in refs:
            r = c.get(u)
            assert r.status_code == 200 and len(r.content) > 0, (u, r.status_code)
            kinds[u.rsplit(".", 1)[-1]] = r.headers["content-type"]
        assert kinds["js"].startswith("text/javascript") and kinds["css"].startswith("text/css")
        assert c.get("/openapi.json").json()["openapi"].startswith("3.1")  # Swagger UI 5 renders 3.1
        assert b"SwaggerUIBundle" in c.get("/docs/assets/swagger-ui-bundle.js").content
        assert c.get("/docs/assets/index.html").status_code == 404   # only the listed files
        assert c.get("/docs/assets/..%2F__init__.py").status_code == 404
        assert c.get("/redoc").status_code == 404                   # its page would need a CDN
