"""Redaction on ingest: home paths, e-mails and token-shaped strings; --no-redact keeps them."""
from __future__ import annotations

import json

from toollat.ingest import ingest
from toollat.ingest.redact import redact_text, redact_value


def test_redact_text_kinds():
    assert redact_text("cat /Users/alice/notes.txt") == "cat /Users/user/notes.txt"
    assert redact_text("cd /home/bob/src && make") == "cd /home/user/src && make"
    assert redact_text(r"dir C:\Users\carol\Documents") == r"dir C:\Users\user\Documents"
    assert redact_text("mail alice.smith@corp.io now") == "mail user@example.com now"
    assert redact_text("export OPENAI_API_KEY=sk-abcdefghijklmnopqrstuvwxyz123456") == "export OPENAI_API_KEY=[REDACTED]"
    assert redact_text("GH=ghp_0123456789abcdefghijABCDEFGHIJ012345") == "GH=[REDACTED]"
    assert redact_text("curl -H 'Authorization: Bearer abcdef1234567890XYZ'") == "curl -H 'Authorization: Bearer [REDACTED]'"
    assert redact_text("--password=hunter22") == "--password=[REDACTED]"


def test_redact_keeps_what_is_not_secret():
    for keep in ["git clone git@github.com:a/b.git", "git show 3f2a9c0e1b2d3c4e5f60718293a4b5c6d7e8f901",
                 "go test -run TestCheckpointRewindWithSubagentTranscripts2", "/home/user/.config",
                 "id 019ed50c-2fb3-7002-a384-360bea6e7f04", "npm i @scope/pkg@1.2.3"]:
        assert redact_text(keep) == keep


def test_redact_value_walks_structures():
    v = {"command": "cat /home/dave/x", "nested": [{"to": "dave@corp.io"}], "n": 3}
    assert redact_value(v) == {"command": "cat /home/user/x", "nested": [{"to": "user@example.com"}], "n": 3}


def _session(tmp_path):
    rec_use = {"type": "assistant", "sessionId": "s1", "uuid": "u1", "timestamp": "2026-01-01T00:00:00.000Z",
               "cwd": "/home/erin/proj",
               "message": {"id": "m1", "model": "claude-x", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash",
                           "input": {"command": "curl -u erin@corp.io -H 'Authorization: Bearer abcdefghijklmnop123456' https://x /home/erin/a"}}]}}
    rec_res = {"type": "user", "sessionId": "s1", "uuid": "u2", "timestamp": "2026-01-01T00:00:01.500Z",
               "message": {"content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}}
    p = tmp_path / "s.jsonl"
    p.write_text(json.dumps(rec_use) + "\n" + json.dumps(rec_res) + "\n")
    return p


def test_ingest_redacts_by_default_and_no_redact_keeps(tmp_path):
    p = _session(tmp_path)
    red = ingest([p])
    args = json.loads(red.to_pandas().args[0])["command"]
    assert "erin" not in args and "abcdefghijklmnop123456" not in args
    assert "user@example.com" in args and "/home/user/a" in args and "Bearer [REDACTED]" in args
    assert red.report.redactions["email"] == 1 and red.report.redactions["token"] == 1
    assert red.to_pandas().project[0] == "proj"
    raw = ingest([p], redact=False)
    assert "erin@corp.io" in raw.to_pandas().args[0] and not raw.report.redactions
    assert raw.to_pandas().wall_ms[0] == 1500.0
