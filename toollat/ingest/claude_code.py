"""Claude Code session JSONL (``~/.claude/projects/<project>/<session>.jsonl``).

One JSON record per line. A ``tool_use`` block (id, name, input) sits in an ``assistant``
record's ``message.content``; its ``tool_result`` (tool_use_id, content, is_error) in a later
``user`` record. Wall latency is the difference of the two records' timestamps. The result
record's ``toolUseResult`` may carry the runner's duration (``durationMs``, ``durationSeconds``,
or ``totalDurationMs`` for Task/Agent subagents), ``interrupted``, and the subagent's
``agentId``. Several tool_use blocks of one assistant message (same ``message.id``) are a
parallel group. Sidechain records (``isSidechain``, ``agentId``) are a subagent's own calls.

An interruption is logged as a tool_result followed by a user record
``[Request interrupted by user for tool use]`` whose ``parentUuid`` is the result record;
a rejection as ``toolUseResult: "User rejected tool use"`` / ``toolDenialKind``. Both set
``interrupted``. Human turns: user records that are not tool results, meta records, compact
summaries, command output or notifications injected by Claude Code.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from toollat.core.timestamps import parse_ts_ms

from .base import ReadContext, Turns, as_int, drive_json_lines, new_row, origin, project_of
from .files import InputFile, content_text, text_length
from .report import FileReport

KNOWN_TYPES = frozenset({
    "user", "assistant", "progress", "system", "summary", "file-history-snapshot",
    "file-history-delta", "queue-operation", "attachment", "last-prompt", "pr-link",
    "custom-title", "mode", "permission-mode", "ai-title", "bridge-session", "frame-link",
    "agent-name", "tag",
})
INTERRUPT_MARK = "[Request interrupted by user"
# User records that Claude Code writes itself, not a person typing.
_NOT_HUMAN_PREFIXES = (
    INTERRUPT_MARK, "<task-notification", "<local-command-stdout", "<local-command-stderr",
    "<local-command-caveat", "<system-reminder",
)
_USAGE_INPUT = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class ClaudeCodeReader:
    name = "claude_code"

    def sniff(self, records: list[dict[str, Any]]) -> bool:
        return any(
            r.get("type") in KNOWN_TYPES
            and "payload" not in r
            and any(k in r for k in ("sessionId", "uuid", "leafUuid", "messageId"))
            for r in records
        )

    def read(self, file: InputFile, report: FileReport, ctx: ReadContext) -> Iterator[dict[str, Any]]:
        state = _Session(file, report, ctx)
        drive_json_lines(file, report, state.handle, ctx.max_line_bytes)
        yield from state.finish()


def _runner_ms(tur: dict[str, Any]) -> float | None:
    for key, scale in (("durationMs", 1.0), ("totalDurationMs", 1.0), ("durationSeconds", 1000.0)):
        v = tur.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0:
            return float(v) * scale
    return None


class _Session:
    """State while reading one file (one session, plus any sidechain records in it)."""

    def __init__(self, file: InputFile, report: FileReport, ctx: ReadContext):
        self.file, self.report, self.ctx = file, report, ctx
        self.default_sid = Path(file.path.name.split(".")[0]).name
        self.pending: dict[str, dict[str, Any]] = {}
        self.done: dict[str, dict[str, Any]] = {}
        self.emitted: list[str] = []
        self.result_uuid: dict[str, str] = {}
        self.interrupt_parents: set[str] = set()
        self.permission_mode: str | None = None
        self.turns = Turns()

    # -- records ------------------------------------------------------------------------
    def handle(self, rec: dict[str, Any], lineno: int) -> str | None:
        rtype = rec.get("type")
        if not isinstance(rtype, str):
            return "record without a type"
        if rtype not in KNOWN_TYPES:
            self.report.note(f"unknown record type seen: {rtype[:40]}")
            return "unknown record type"
        mode = rec.get("permissionMode")
        if isinstance(mode, str):
            self.permission_mode = mode
        if rtype == "assistant":
            return self._assistant(rec, lineno)
        if rtype == "user":
            return self._user(rec)
        return None

    def _assistant(self, rec: dict[str, Any], lineno: int) -> str | None:
        msg = rec.get("message")
        if not isinstance(msg, dict):
            return "bad field: message"
        ts = parse_ts_ms(rec.get("timestamp"))
        content = msg.get("content")
        blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
        uses = [b for b in blocks if b.get("type") == "tool_use"]
        if uses and ts is None:
            return "bad field: timestamp"
        sidechain = rec.get("isSidechain") is True
        if not sidechain:
            self.turns.activity(ts)
        if not uses:
            return None
        usage = msg.get("usage") if isinstance(msg.get("usage"), dict) else {}
        inputs = [as_int(usage.get(k)) for k in _USAGE_INPUT]
        context_tokens = sum(v for v in inputs if v is not None) if any(v is not None for v in inputs) else None
        model = msg.get("model") if isinstance(msg.get("model"), str) else None
        sid = rec.get("sessionId") if isinstance(rec.get("sessionId"), str) else self.default_sid
        group = msg.get("id") if isinstance(msg.get("id"), str) else rec.get("uuid")
        agent_id = rec.get("agentId") if isinstance(rec.get("agentId"), str) else None
        for b in uses:
            call_id, name, tool_input = b.get("id"), b.get("name"), b.get("input")
            if not isinstance(call_id, str) or not call_id or not isinstance(name, str) or not name:
                self.report.note("tool_use block without a usable id or name")
                continue
            if call_id in self.pending or call_id in self.done:
                self.report.note("tool_use repeated in a later record (kept the first)")
                continue
            if not isinstance(tool_input, dict):
                self.report.note("tool_use input not an object (kept as given)")
            self.pending[call_id] = new_row(
                call_id=call_id,
                agent="claude_code",
                session_id=sid,
                project=self.ctx.text(project_of(rec.get("cwd"))),
                model=model,
                tool_name=name,
                args=self.ctx.args_json(tool_input),
                input_chars=len(json.dumps(tool_input, ensure_ascii=False, separators=(",", ":"))),
                emitted_at=ts,
                parallel_group=str(group),
                is_sidechain=sidechain,
                agent_id=agent_id if sidechain else None,
                context_tokens=context_tokens,
                output_tokens=as_int(usage.get("output_tokens")),
                permission_mode=self.permission_mode,
                **self.turns.fields(),
                origin=origin(self.file, lineno),
            )
            self.emitted.append(call_id)
        return None

    def _user(self, rec: dict[str, Any]) -> str | None:
        msg = rec.get("message")
        if not isinstance(msg, dict):
            return "bad field: message"
        ts = parse_ts_ms(rec.get("timestamp"))
        content = msg.get("content")
        results = [b for b in content if isinstance(b, dict) and b.get("type") == "tool_result"] \
            if isinstance(content, list) else []
        if results:
            if ts is None:
                return "bad field: timestamp"
            self._results(rec, results, ts)
            return None
        text = content_text(content, 200).lstrip()
        if text.startswith(INTERRUPT_MARK) and isinstance(rec.get("parentUuid"), str):
            self.interrupt_parents.add(rec["parentUuid"])
        if ts is not None and self._is_human(rec, text):
            self.turns.human(ts)
        return None

    @staticmethod
    def _is_human(rec: dict[str, Any], text: str) -> bool:
        if rec.get("isMeta") or rec.get("isCompactSummary") or rec.get("isSidechain") is True:
            return False
        return bool(text) and not text.startswith(_NOT_HUMAN_PREFIXES)

    def _results(self, rec: dict[str, Any], results: list[dict[str, Any]], ts: int) -> None:
        # toolUseResult describes the record's single result; with several it is ambiguous.
        tur = rec.get("toolUseResult") if len(results) == 1 else None
        rejected = isinstance(rec.get("toolDenialKind"), str) or (
            isinstance(tur, str) and tur.startswith("User rejected"))
        for b in results:
            call_id = b.get("tool_use_id")
            if not isinstance(call_id, str):
                self.report.note("tool_result without a usable tool_use_id")
                continue
            row = self.pending.pop(call_id, None)
            if row is None:
                if call_id in self.done:
                    self.report.note("tool_result repeated (kept the first)")
                else:
                    self.report.results_without_call += 1
                continue
            if "is_error" in b and not isinstance(b["is_error"], bool):
                self.report.note("bad field: is_error (taken as false)")
            row["result_at"] = ts
            row["is_error"] = b.get("is_error") is True
            row["result_chars"] = text_length(b.get("content"))
            row["interrupted"] = rejected
            if isinstance(tur, dict):
                row["internal_ms"] = _runner_ms(tur)
                row["interrupted"] = rejected or tur.get("interrupted") is True
                if isinstance(tur.get("agentId"), str):
                    row["spawned_agent_id"] = tur["agentId"]
            self.done[call_id] = row
            if isinstance(rec.get("uuid"), str):
                self.result_uuid[call_id] = rec["uuid"]
        if rec.get("isSidechain") is not True:
            self.turns.activity(ts)

    # -- end of file --------------------------------------------------------------------
    def finish(self) -> Iterator[dict[str, Any]]:
        self.report.without_result += len(self.pending)
        self.report.calls += len(self.done)
        for call_id in self.emitted:
            row = self.done.get(call_id)
            if row is None:
                continue
            if self.result_uuid.get(call_id) in self.interrupt_parents:
                row["interrupted"] = True
            yield row
