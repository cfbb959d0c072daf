"""Write a harvested session as a Claude Code session JSONL file.

Records are shaped like ``~/.claude/projects/<project>/<session>.jsonl`` (see
``toollat/ingest/claude_code.py``): a human ``user`` record with a text prompt, then per call an
``assistant`` record whose ``message.content`` holds one ``tool_use`` block and a later ``user``
record holding its ``tool_result`` with the record-level ``toolUseResult``. Calls emitted
together share one ``message.id`` (separate records, like Claude Code writes them), and each
result points at its call's record through ``parentUuid``/``sourceToolAssistantUUID``.

Timestamps are the real ones: the call's record carries the instant just before it started,
the result's record the instant it ended (start + the ``perf_counter`` duration), ISO-8601 UTC
with milliseconds. Token counts are estimates (characters / 4 over the growing context) since no
model ran. The temporary workspace path is replaced by a neutral ``/home/user/...`` everywhere,
and long texts are cut to keep the files small.
"""
from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .tools import Outcome

__all__ = ["NEUTRAL_HOME", "NEUTRAL_CWD", "SessionLog", "iso_ms", "ts_ms"]

NEUTRAL_HOME = "/home/user"
NEUTRAL_CWD = f"{NEUTRAL_HOME}/harvest-workspace"
VERSION = "harvest-0.1.0"
MODEL = "harvest"
MAX_RESULT_CHARS = 2000
MAX_DETAIL_CHARS = 500
MAX_DETAIL_ITEMS = 50
SYSTEM_PROMPT_TOKENS = 12_000   # what a Claude Code system prompt and tool list roughly cost


def iso_ms(t: float) -> str:
    """Epoch seconds -> ``2026-01-01T12:00:00.123Z`` (milliseconds truncated, as a clock shows them)."""
    return datetime.fromtimestamp(t, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def ts_ms(t: float) -> int:
    """The epoch milliseconds a reader gets back from ``iso_ms(t)``."""
    return round(datetime.fromisoformat(iso_ms(t)).timestamp() * 1000)


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n... [{len(text) - limit} characters truncated]"


class SessionLog:
    """The records of one session, in file order."""

    def __init__(self, session_id: str, real_home: Path, rng_tokens: Any):
        self.session_id = session_id
        self.real_home = str(real_home)
        self.rng = rng_tokens
        self.records: list[dict[str, Any]] = []
        self.last_uuid: str | None = None
        self.context_tokens = SYSTEM_PROMPT_TOKENS
        self.fresh_tokens = 0       # added to the context since the last model message
        self.calls = 0

    # -- helpers ----------------------------------------------------------------------------
    def scrub(self, value: Any) -> Any:
        """Replace the temporary directory by the neutral home, in strings at any depth."""
        if isinstance(value, str):
            return value.replace(self.real_home, NEUTRAL_HOME)
        if isinstance(value, dict):
            return {k: self.scrub(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.scrub(v) for v in value]
        return value

    def _details(self, value: Any) -> Any:
        if isinstance(value, str):
            return _cut(self.scrub(value), MAX_DETAIL_CHARS)
        if isinstance(value, dict):
            return {k: self._details(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._details(v) for v in value[:MAX_DETAIL_ITEMS]]
        return value

    def _base(self, rtype: str, t: float, parent: str | None) -> dict[str, Any]:
        return {
            "parentUuid": parent, "isSidechain": False, "userType": "external", "cwd": NEUTRAL_CWD,
            "sessionId": self.session_id, "version": VERSION, "gitBranch": "main", "type": rtype,
            "uuid": str(uuid.uuid4()), "timestamp": iso_ms(t),
        }

    def _usage(self, output_chars: int) -> dict[str, int]:
        usage = {
            "input_tokens": self.rng.randint(1, 8),
            "cache_creation_input_tokens": self.fresh_tokens,
            "cache_read_input_tokens": self.context_tokens - self.fresh_tokens,
            "output_tokens": max(output_chars // 4, 1) + self.rng.randint(10, 120),
        }
        self.fresh_tokens = 0
        return usage

    def _grow(self, chars: int) -> None:
        self.context_tokens += chars // 4
        self.fresh_tokens += chars // 4

    # -- records ----------------------------------------------------------------------------
    def human(self, text: str, t: float) -> None:
        rec = self._base("user", t, self.last_uuid)
        rec["message"] = {"role": "user", "content": text}
        self.records.append(rec)
        self.last_uuid = rec["uuid"]
        self._grow(len(text))

    def assistant_text(self, message_id: str, text: str, t: float, end_turn: bool) -> None:
        rec = self._base("assistant", t, self.last_uuid)
        rec["message"] = {
            "model": MODEL, "id": message_id, "type": "message", "role": "assistant",
            "content": [{"type": "text", "text": text}],
            "stop_reason": "end_turn" if end_turn else "tool_use", "stop_sequence": None,
            "usage": self._usage(len(text)),
        }
        rec["requestId"] = f"req_{message_id[4:]}"
        self.records.append(rec)
        self.last_uuid = rec["uuid"]
        self._grow(len(text))

    def calls_group(self, message_id: str, calls: list[tuple[str, str, dict[str, Any], Outcome]]) -> None:
        """One assistant message's calls (1 to 3) with their results: emissions, then results by end time.

        ``calls`` holds (call id, tool name, input, outcome) in emission order.
        """
        inputs = [self.scrub(inp) for _, _, inp, _ in calls]
        usage = self._usage(sum(len(json.dumps(i)) for i in inputs))
        use_uuid: dict[str, str] = {}
        for (call_id, name, _, out), inp in zip(calls, inputs):
            rec = self._base("assistant", out.started_at, self.last_uuid)
            rec["message"] = {
                "model": MODEL, "id": message_id, "type": "message", "role": "assistant",
                "content": [{"type": "tool_use", "id": call_id, "name": name, "input": inp}],
                "stop_reason": "tool_use", "stop_sequence": None, "usage": usage,
            }
            rec["requestId"] = f"req_{message_id[4:]}"
            self.records.append(rec)
            self.last_uuid = use_uuid[call_id] = rec["uuid"]
            self._grow(len(json.dumps(inp)))
        for call_id, name, _, out in sorted(calls, key=lambda c: c[3].ended_at):
            rec = self._base("user", out.ended_at, use_uuid[call_id])
            content = _cut(self.scrub(out.content), MAX_RESULT_CHARS)
            rec["message"] = {"role": "user", "content": [
                {"tool_use_id": call_id, "type": "tool_result", "content": content, "is_error": out.is_error}]}
            details = dict(out.details)
            if name in ("Glob", "Grep"):  # Claude Code reports its own duration for these
                details["durationMs"] = round(out.ms)
            if out.is_error and not details:
                details = f"Error: {content[:200]}"
            rec["toolUseResult"] = self._details(details)
            rec["sourceToolAssistantUUID"] = use_uuid[call_id]
            self.records.append(rec)
            self.last_uuid = rec["uuid"]
            self._grow(len(content))
            self.calls += 1

    def write(self, path: Path) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for rec in self.records:
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
