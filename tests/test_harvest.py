"""Harvest: the safety gates (catalog, paths, timeouts, clean-up) and the logs' round trip through ingest.

Two short real harvests run once per module (about 25 s together): one with the default
per-call timeout, checked against toollat's Claude Code reader, and one with a tiny timeout.
"""
from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path

import pytest

from toollat.harvest import HarvestRefused, ToolRunner, check_command, check_path, run_harvest
from toollat.harvest.agent import PlannedCall, SessionPlanner, TurnBreak
from toollat.harvest.workspace import build_workspace
from toollat.ingest import ingest

OUTSIDE_COMMANDS = [
    "curl http://example.com",
    "wget -q https://example.com/x",
    "rm -rf /",
    "bash -c ls",
    "sh -c 'ls'",
    "cat /etc/passwd",
    "git push origin main",
    "git fetch",
    "git clone https://github.com/a/b",
    "git -c core.pager=sh status",
    "find . -delete",
    "find . -exec cat {} +",
    "find . -name x -exec rm {} ';'",
    "python -c 'import os; os.system(\"id\")'",
    "python -c 'print(sum(i * i for i in range(1000000000)))'",   # beyond the loop bound
    "python setup.py install",
    "python -m http.server",
    "ls; rm -rf src",
    "ls && curl http://example.com",
    "ls > out.txt",
    "echo $(id)",
    "ls `id`",
    "tar -xzf build/a.tar.gz",
    "tar --to-command=sh -cf build/a.tar src",
    "sleep 1000",
    "sort -o src/x.py src/x.py",
    "ls | python -c 'print(1)'",
    "pytest src",
    "du -sh src | sh",
]
OUTSIDE_PATHS = ["/etc/passwd", "../../x", "/", "src/../../outside", "~/.ssh/id_rsa"]


@pytest.fixture()
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    (root / "src").mkdir(parents=True)
    (root / "tests").mkdir()
    (root / "build").mkdir()
    (root / "src" / "a.py").write_text("def f():\n    return 1\n")
    (root / "tests" / "test_fast_math.py").write_text("def test_x():\n    assert True\n")
    (root / "escape").symlink_to("/etc")
    (root / "escape_file").symlink_to("/etc/hostname")
    return root.resolve()


# -- catalog and paths ----------------------------------------------------------------------
@pytest.mark.parametrize("command", OUTSIDE_COMMANDS)
def test_command_outside_the_catalog_is_refused(ws, command):
    with pytest.raises(HarvestRefused):
        check_command(command, ws)


@pytest.mark.parametrize("command", [
    "ls -la src", "git status --short", "git log --oneline -n 5", "git grep -n TODO -- src",
    "python -m pytest -q tests/test_fast_math.py", "pytest -x tests 2>&1 | tail -15", "sleep 0.5",
    "find src -name '*.py' | wc -l", "python -c 'print(sum(i * i for i in range(1000)))'",
    "python -c 'import numpy; print(numpy.__name__)'", "tar -czf build/src.tar.gz src",
    "python -m compileall -q -f src", "du -h -d 1 src", "wc -l src/a.py | sort -n | tail -5",
])
def test_catalog_commands_pass_and_become_argv(ws, command):
    stages = check_command(command, ws)
    assert stages and all(isinstance(s.argv, list) and os.path.isabs(s.argv[0]) for s in stages)


@pytest.mark.parametrize("path", [*OUTSIDE_PATHS, "escape/passwd", "escape_file", "escape"])
def test_path_outside_the_workspace_is_refused(ws, path):
    with pytest.raises(HarvestRefused):
        check_path(path, ws)
    with pytest.raises(HarvestRefused):
        check_command(f"ls {path}", ws)


def test_paths_inside_are_allowed_but_not_writes_into_git(ws):
    assert check_path("src/a.py", ws) == ws / "src" / "a.py"
    assert check_path(ws / "src" / ".." / "tests", ws) == ws / "tests"
    (ws / ".git").mkdir()
    check_path(".git/config", ws)
    with pytest.raises(HarvestRefused):
        check_path(".git/config", ws, write=True)


@pytest.mark.parametrize("path", [".git/config", "tests/conftest.py", "tests/test_fast_math.py", "json.py",
                                  "src/conftest.py", "pytest.ini", "src/evil.pth"])
def test_writes_that_could_change_what_runs_are_refused(ws, path):
    (ws / ".git").mkdir(exist_ok=True)
    check_path(path, ws)  # reading is fine
    with pytest.raises(HarvestRefused):
        check_path(path, ws, write=True)
    out = ToolRunner(ws, timeout_s=5).run("Write", {"file_path": str(ws / path), "content": "import os\n"})
    assert out.refused and not (ws / path).is_file() or (ws / path).read_text() != "import os\n"


def test_tools_refuse_outside_paths_without_touching_them(ws, tmp_path):
    runner = ToolRunner(ws, timeout_s=5)
    victim = tmp_path / "victim.txt"
    cases = [
        ("Read", {"file_path": "/etc/passwd"}),
        ("Read", {"file_path": str(ws / "escape" / "hostname")}),
        ("Grep", {"pattern": "root", "path": "/etc"}),
        ("Glob", {"pattern": "../*", "path": str(ws)}),
        ("Glob", {"pattern": "*", "path": "/etc"}),
        ("Write", {"file_path": str(victim), "content": "x"}),
        ("Write", {"file_path": str(ws / "escape_file"), "content": "x"}),
        ("Edit", {"file_path": str(ws / "escape_file"), "old_string": "a", "new_string": "b"}),
        ("Bash", {"command": "cat /etc/passwd"}),
        ("Bash", {"command": "head -n 1 escape/passwd"}),
        ("WebFetch", {"url": "https://example.com"}),
    ]
    for name, inp in cases:
        out = runner.run(name, inp)
        assert out.refused and out.is_error, (name, inp, out.content)
        assert "root:" not in out.content
    assert not victim.exists()


def test_tools_really_run_inside(ws):
    runner = ToolRunner(ws, timeout_s=10)
    read = runner.run("Read", {"file_path": str(ws / "src" / "a.py"), "offset": 2, "limit": 1})
    assert not read.is_error and "return 1" in read.content and "def f" not in read.content
    assert runner.run("Grep", {"pattern": r"return \d", "path": str(ws), "output_mode": "count"}).content.endswith("a.py:1")
    assert runner.run("Edit", {"file_path": str(ws / "src" / "a.py"), "old_string": "return 1", "new_string": "return 2"}).is_error is False
    assert "return 2" in (ws / "src" / "a.py").read_text()
    bash = runner.run("Bash", {"command": "wc -l src/a.py"})
    assert not bash.is_error and bash.content.startswith("2 src/a.py") and bash.ms > 0


# -- timeouts ---------------------------------------------------------------------------------
def test_call_past_its_timeout_is_stopped(ws):
    out = ToolRunner(ws, timeout_s=0.3).run("Bash", {"command": "sleep 5"})
    assert out.timed_out and out.is_error and "timed out" in out.content
    assert 250 <= out.ms < 2000
    # The input's own timeout (milliseconds, as Claude Code's Bash takes it) bounds it too.
    out = ToolRunner(ws, timeout_s=30).run("Bash", {"command": "sleep 3", "timeout": 200})
    assert out.timed_out and 150 <= out.ms < 1500


@pytest.fixture(scope="module")
def timeout_harvest(tmp_path_factory):
    out = tmp_path_factory.mktemp("harvest_timeouts")
    return out, run_harvest(out, budget_s=8, seed=5, call_timeout_s=0.1)


def test_timed_out_calls_are_recorded_as_errors(timeout_harvest):
    out, report = timeout_harvest
    assert report.timeouts > 0
    timed_out = {c.call_id for c in report.harvested if c.timed_out}
    df = ingest([out]).to_pandas().set_index("call_id")
    assert df.loc[sorted(timed_out), "is_error"].all()
    # Killed at 0.1 s: nothing that timed out blocked anywhere near the 10 s sleeps of the catalog.
    assert df.loc[sorted(timed_out), "wall_ms"].max() < 1500
    assert report.workspace_removed and not Path(report.workspace).exists()


# -- clean-up -----------------------------------------------------------------------------------
def test_workspace_removed_on_error(tmp_path, monkeypatch):
    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def spy(*args, **kwargs):
        path = real_mkdtemp(*args, **kwargs)
        made.append(path)
        return path

    def boom(self, name, tool_input):
        raise RuntimeError("tool exploded")

    monkeypatch.setattr(tempfile, "mkdtemp", spy)
    monkeypatch.setattr(ToolRunner, "run", boom)
    with pytest.raises(RuntimeError, match="tool exploded"):
        run_harvest(tmp_path / "out", budget_s=30, seed=0)
    assert made and all(not Path(p).exists() for p in made)


# -- planner output always passes the gates ---------------------------------------------------
def test_planned_calls_pass_the_catalog(tmp_path):
    ws = build_workspace(tmp_path, random.Random(2))
    rng = random.Random(2)
    seen = set()
    for _ in range(30):
        planner = SessionPlanner(ws, rng)
        while (step := planner.next(1e9)) is not None:
            if isinstance(step, TurnBreak):
                continue
            for call in step:
                assert isinstance(call, PlannedCall)
                seen.add(call.name)
                if call.name == "Bash":
                    check_command(call.input["command"], ws.root)
                else:
                    check_path(call.input.get("file_path") or call.input.get("path"), ws.root)
    assert seen == {"Read", "Grep", "Glob", "Edit", "Write", "Bash"}
    assert sum(n for _, n in ws.package("large").files) > sum(n for _, n in ws.package("small").files)


# -- a real harvest, read back by toollat's own reader -------------------------------------------
@pytest.fixture(scope="module")
def harvest(tmp_path_factory):
    out = tmp_path_factory.mktemp("harvest")
    return out, run_harvest(out, budget_s=18, seed=1)


def test_harvest_report(harvest):
    out, report = harvest
    assert report.sessions >= 1 and report.calls >= 20
    assert report.sessions == len(report.files) == len(list(out.glob("*.jsonl")))
    assert report.seconds < 18 + 15   # the budget, plus at most one call that started near its end
    assert report.workspace_removed and not Path(report.workspace).exists()
    assert report.refused == 0 and report.timeouts == 0
    d = report.to_dict()
    json.dumps(d)
    assert d["calls"] == report.calls and "harvested" not in d


def test_harvest_round_trips_through_ingest(harvest):
    out, report = harvest
    res = ingest([out])
    assert {f.format for f in res.report.files} == {"claude_code"}
    assert res.report.unbalanced() == []
    assert res.report.total("without_result") == 0 and res.report.total("results_without_call") == 0
    df = res.to_pandas()
    assert len(df) == report.calls
    assert df["session_id"].nunique() == report.sessions
    mine = {c.call_id: c for c in report.harvested}
    assert set(df["call_id"]) == set(mine)
    for row in df.itertuples():
        c = mine[row.call_id]
        assert row.tool_name == c.tool and row.is_error == c.is_error
        assert row.wall_ms == c.wall_ms                     # the timestamps the harvest wrote
        assert abs(row.wall_ms - c.ms) <= 1.0 + 1e-6        # millisecond clock vs perf_counter
        assert row.parallel_group == c.message_id
    assert (df["model"] == "harvest").all() and (df["project"] == "harvest-workspace").all()
    # Calls of one message overlap in time: each was emitted before the others' results arrived.
    for _, group in df[df["parallel_size"] > 1].groupby("parallel_group"):
        assert group["emitted_at"].max() <= group["result_at"].min()


def test_harvest_logs_look_like_claude_code(harvest):
    out, report = harvest
    text = "".join(p.read_text() for p in report.files)
    assert "toollat-harvest-" not in text and tempfile.gettempdir() + "/" not in text
    for path in report.files:
        recs = [json.loads(line) for line in path.read_text().splitlines()]
        assert recs[0]["type"] == "user" and isinstance(recs[0]["message"]["content"], str)
        for r in recs:
            assert {"type", "sessionId", "uuid", "parentUuid", "timestamp", "cwd", "isSidechain", "version"} <= set(r)
            assert r["timestamp"].endswith("Z") and len(r["timestamp"]) == 24
            assert r["cwd"] == "/home/user/harvest-workspace" and r["isSidechain"] is False
        uses = [b for r in recs if r["type"] == "assistant" for b in r["message"]["content"] if b["type"] == "tool_use"]
        assert all(set(b) == {"type", "id", "name", "input"} for b in uses)


def test_harvest_latencies_span_two_orders_of_magnitude(harvest):
    _, report = harvest
    assert report.min_ms is not None and report.min_ms > 0
    assert report.max_ms / report.min_ms >= 100
    ms = sorted(c.ms for c in report.harvested)
    assert ms[len(ms) // 10] < 10 and ms[-1] > 500     # many fast calls and some slow ones
