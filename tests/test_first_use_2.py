"""What a new user hits, round 2 (issue 23): the shipped default learns while serving, /docs works
without a network, clear errors for the usual first mistakes. Each failed before its fix.
(A training run that keeps an existing bundle, and a clean training log: tests/test_train_output.py.)"""
from __future__ import annotations

import re
from dataclasses import asdict

import httpx
import pytest

from conftest import loopback_server, run_cli
from toollat.online import OnlineConfig
from toollat.predictor import Predictor
from toollat.serving import ServerLimits, create_app


def cli(*args, timeout=300, **kw):
    return run_cli(*args, check=False, timeout=timeout, **kw)


@pytest.fixture(scope="module")
def default_server():
    """`toollat serve --model default` as a real uvicorn server on loopback (a thread here)."""
    limits = ServerLimits()
    with loopback_server(create_app(Predictor.load("default"), limits=limits), limits) as base:
        yield base


# -- 1. the shipped default learns while serving --------------------------------------------------
def test_online_settings_have_one_owner():
    """The online group composes to OnlineConfig's defaults (its schema: the one owner); a bundle
    without settings gets them."""
    from toollat.config import compose

    assert compose(["+exp=grep_shell"])["online"] == asdict(OnlineConfig())
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


# -- 6. the usual first mistakes get a clear message -----------------------------------------------
def test_predict_says_args_json_is_an_object_of_arguments():
    p = cli("predict", "Bash", "ls -la")
    assert p.returncode == 2 and """must be a JSON object""" in p.stderr and """'{"command": "ls -la"}'""" in p.stderr
    assert "Traceback" not in p.stderr
    p = cli("predict", "Read", '["a.py"]')
    assert p.returncode == 2 and "file_path" in p.stderr and "a JSON list" in p.stderr


def test_a_tool_name_in_another_case_is_not_silently_a_fallback():
    exact = cli("predict", "Bash", '{"command": "ls -la"}', "--json")
    assert exact.returncode == 0 and "warning" not in exact.stderr and "fallback" not in exact.stdout
    lower = cli("predict", "bash", '{"command": "ls -la"}', "--json")
    assert lower.returncode == 0 and '"fallback": "family"' in lower.stdout
    assert "case-sensitive" in lower.stderr and "did you mean 'Bash'?" in lower.stderr
    unknown = cli("predict", "FooTool", "{}")
    assert "never saw a tool named 'FooTool'" in unknown.stderr and "did you mean" not in unknown.stderr


def test_a_wrong_model_lists_the_bundles_there_are(small_bundle, tmp_path):
    import os
    import shutil

    shutil.copytree(small_bundle, tmp_path / "mine")
    (tmp_path / "not_a_bundle").mkdir()
    env = {**os.environ, "TOOLLAT_MODELS": str(tmp_path)}
    p = cli("predict", "--model", "mnie", "Bash", "{}", env=env)
    assert p.returncode == 2 and "no bundle named 'mnie'" in p.stderr
    listed = p.stderr.split("bundles by name:")[1]
    assert "mine" in listed and "default" in listed and "not_a_bundle" not in listed
    p = cli("evaluate", "--model", str(tmp_path / "nope" / "mine"), "--data", str(tmp_path), env=env)
    assert p.returncode == 2 and "bundles by name: mine, default" in p.stderr


def test_evaluate_on_a_missing_or_empty_directory_says_so(tmp_path):
    p = cli("evaluate", "--data", str(tmp_path / ".claude" / "projects"))
    assert p.returncode == 2 and f"no such directory: {tmp_path / '.claude' / 'projects'}" in p.stderr
    p = cli("evaluate", "--data", str(tmp_path / "calls.parquet"))
    assert p.returncode == 2 and "no such file:" in p.stderr
    p = cli("evaluate", "--data", str(tmp_path / "logs[serve]"))   # a message is text, not rich markup
    assert p.returncode == 2 and f"no such directory: {tmp_path / 'logs[serve]'}" in p.stderr
    (tmp_path / "empty").mkdir()
    p = cli("evaluate", "--data", str(tmp_path / "empty"))
    assert p.returncode == 1 and "nothing to read (an empty directory?)" in p.stderr


# -- 4. long work says where it is, in a terminal or a log ---------------------------------------
def test_progress_in_a_log_is_plain_lines_and_short_work_adds_none(capsys):
    from toollat.progress import progress_bar, step

    with progress_bar(True, every_s=0) as bar:       # 0: a line at every update
        t = bar.add_task("reading logs", total=2)
        bar.update(t, advance=1, description="reading a.jsonl")
        bar.update(t, advance=1, description="reading b.jsonl")
    with progress_bar(True, every_s=3600) as bar:    # done before its first line is due: silent
        bar.advance(bar.add_task("short", total=1))
    with step("fitting the model", True, every_s=3600):   # a step says when it starts
        pass
    with progress_bar(False) as bar:                 # disabled (--json, --quiet): nothing
        bar.advance(bar.add_task("off", total=1))
    err = capsys.readouterr().err
    lines = [re.sub(r" \(\d+:\d\d\)$", "", line) for line in err.splitlines()]
    assert lines == ["reading a.jsonl: 1/2", "reading b.jsonl: 2/2", "reading b.jsonl: 2/2 done", "fitting the model"]
    assert "\x1b" not in err


def test_harvest_says_where_it_is_over_its_budget(tmp_path, monkeypatch, capfd):
    from toollat import progress
    from toollat.harvest import run_harvest

    monkeypatch.setattr(progress, "LINE_EVERY_S", 1.0)   # 15 s in use; the budget here is 6 s
    report = run_harvest(tmp_path / "h", budget_s=6, seed=1, progress=True)
    err = capfd.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("harvesting for 6 s: ")]
    assert report.calls > 0 and len(lines) >= 2 and lines[-1].rsplit(" (", 1)[0].endswith("done"), err[-2000:]
    assert any("calls (last " in line for line in lines) and "\x1b" not in err


def test_plots_of_a_corpus_without_long_calls_warn_of_nothing():
    """A harvested demo corpus has no call of 60 s: the precision-recall plot says so, silently."""
    import warnings

    import numpy as np

    from toollat.evaluation.plots import long_pr
    from toollat.models import Prediction

    levels = (0.1, 0.5, 0.9, 0.99)
    pred = Prediction(levels, np.log10(np.full((5, 4), 0.5)), np.full(5, 0.01))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        long_pr(np.full(5, 500.0), {"toollat": (pred, 0.5)})
