"""`toollat ingest` as a user runs it: a real subprocess, its summary and its Parquet output."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd

from conftest import corpus_file

TOOLLAT = [sys.executable, "-m", "toollat.cli"]
CLAUDE = "PackmindHub__context-evaluator/claude-code/00acd976-784c-4077-95cd-19aa1b51739b.jsonl.gz"
CODEX = "EntityProcess__agentv/codex/019ed50c-2fb3-7002-a384-360bea6e7f04.jsonl.gz"


def toollat(*args, env=None, check=True):
    proc = subprocess.run([*TOOLLAT, *map(str, args)], capture_output=True, text=True, env=env, timeout=300)
    if check:
        assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc


def test_ingest_json_summary_and_parquet(corpus, tmp_path):
    d = tmp_path / "logs"
    d.mkdir()
    shutil.copy(corpus_file(corpus, CLAUDE), d / "a.jsonl.gz")
    shutil.copy(corpus_file(corpus, CODEX), d / "b.jsonl.gz")
    (d / "junk.txt").write_text("hello\n")
    out = tmp_path / "calls.parquet"
    proc = toollat("ingest", d, "--out", out, "--json")
    summary = json.loads(proc.stdout)
    assert summary["files_by_format"] == {"claude_code": 1, "codex": 1, "unsupported": 1}
    assert summary["unsupported"] == {"junk.txt": "text, not JSON lines"}
    assert summary["lines_skipped"] == {"unsupported file: text, not JSON lines": 1}
    df = pd.read_parquet(out)
    assert len(df) == summary["calls"] and df.call_id.is_unique
    assert summary["out"] == str(out)


def test_ingest_human_summary(corpus, tmp_path):
    out = tmp_path / "calls.parquet"
    proc = toollat("ingest", corpus_file(corpus, CLAUDE), "--out", out)
    assert "Calls with a result, by agent" in proc.stdout and "claude_code" in proc.stdout
    assert "wrote" in proc.stdout


def test_ingest_local_honours_env(corpus, tmp_path):
    home = tmp_path / "home"
    cfg = tmp_path / "claude-config"
    codex_home = tmp_path / "codex-home"
    (cfg / "projects" / "-Users-someone-proj").mkdir(parents=True)
    (codex_home / "sessions" / "2026" / "06" / "17").mkdir(parents=True)
    home.mkdir()
    shutil.copy(corpus_file(corpus, CLAUDE), cfg / "projects" / "-Users-someone-proj" / "s.jsonl.gz")
    shutil.copy(corpus_file(corpus, CODEX), codex_home / "sessions" / "2026" / "06" / "17" / "rollout.jsonl.gz")
    env = {**os.environ, "HOME": str(home), "CLAUDE_CONFIG_DIR": str(cfg), "CODEX_HOME": str(codex_home)}
    out = tmp_path / "local.parquet"
    summary = json.loads(toollat("ingest", "--local", "--out", out, "--json", env=env).stdout)
    assert set(summary["calls_by_agent"]) == {"claude_code", "codex"}
    df = pd.read_parquet(out)
    assert "-Users-someone-proj" in set(df.source)


def test_ingest_local_with_nothing_there(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path)}
    env.pop("CLAUDE_CONFIG_DIR", None)
    env.pop("CODEX_HOME", None)
    proc = toollat("ingest", "--local", "--out", tmp_path / "x.parquet", env=env, check=False)
    assert proc.returncode == 1
    err = proc.stderr.replace("\n", "")
    assert "no local agent logs found" in err and str(tmp_path / ".claude" / "projects") in err
    assert err.count("error:") == 1 and "give log files" not in err   # said once, not twice


def test_ingest_missing_path_is_a_clear_error(tmp_path):
    proc = toollat("ingest", tmp_path / "nope", "--out", tmp_path / "x.parquet", check=False)
    assert proc.returncode == 2 and "no such file or directory" in proc.stderr
    assert "Traceback" not in proc.stderr
