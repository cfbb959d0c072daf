"""Codex rollout JSONL (``~/.codex/sessions/YYYY/MM/DD/rollout-*.jsonl``).

Lines are ``{timestamp, type, payload}``; ``session_meta`` comes first (session id, cwd),
``turn_context`` carries the model and approval policy. Tool calls are ``response_item``
payloads of type ``function_call`` / ``custom_tool_call`` / ``local_shell_call`` (``call_id``,
``name``, ``arguments`` or ``input``), answered by ``function_call_output`` /
``custom_tool_call_output`` with the same ``call_id``. The output text usually starts with
``Wall time: X seconds`` (the runner's duration) and ``Process exited with code N`` /
``Exit code: N``; a command still running after its yield window says ``Process running with
session ID N``, and later ``write_stdin`` calls with ``session_id: N`` poll it (each poll is a
call of its own, linked through ``poll_of``). Calls emitted one after another without an
output or message in between are one parallel group. ``token_count`` events report the usage
of the request that emitted the preceding calls. Human turns are ``user_message`` events.
"""
from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from toollat.core.timestamps import parse_ts_ms

from .base import ReadContext, Turns, as_int, drive_json_lines, new_row, origin, project_of
from .files import InputFile, content_text, too_deep
from .report import FileReport

RECORD_TYPES = frozenset({
    "session_meta", "response_item", "event_msg", "turn_context", "compacted", "world_state",
    "inter_agent_communication_metadata",
})
CALL_TYPES = frozenset({"function_call", "custom_tool_call", "local_shell_call"})
OUTPUT_TYPES = frozenset({"function_call_output", "custom_tool_call_output"})

_WALL = re.compile(r"Wall time:? ([0-9]+(?:\.[0-9]+)?) seconds")
_EXIT = re.compile(r"(?:Process exited with code|Exit code:) (-?[0-9]+)")
_RUNNING = re.compile(r"Process running with session ID ([0-9]+)")
_FAILED = re.compile(r"^(?:[\w.]+ failed\b|apply_patch verification failed|Script failed|execution error)")


class CodexReader:
    name = "codex"

    def sniff(self, records: list[dict[str, Any]]) -> bool:
        return any(r.get("type") in RECORD_TYPES and "payload" in r for r in records)

    def read(self, file: InputFile, report: FileReport, ctx: ReadContext) -> Iterator[dict[str, Any]]:
        state = _Rollout(file, report, ctx)
        drive_json_lines(file, report, state.handle, ctx.max_line_bytes)
        yield from state.finish()


def _call_args(p: dict[str, Any], report: FileReport) -> Any:
    if p["type"] == "local_shell_call":
        return p.get("action")
    if p["type"] == "custom_tool_call":
        return {"input": p.get("input")}
    raw = p.get("arguments")
    if isinstance(raw, dict):
        return raw
    if isinstance(raw, str):
        try:
            args = json.loads(raw)
            if not too_deep(args):
                return args
        except json.JSONDecodeError:
            report.note("function_call arguments not valid JSON (kept as text)")
            return {"raw": raw}
        except RecursionError:  # the stdlib decoder recurses per bracket
            pass
        report.note("function_call arguments nested too deep (kept as text)")
        return {"raw": raw}
    report.note("function_call without arguments")
    return {}


def _input_chars(p: dict[str, Any], args: Any) -> int:
    raw = p.get("arguments") if p["type"] == "function_call" else p.get("input")
    return len(raw) if isinstance(raw, str) else len(json.dumps(args, ensure_ascii=False))


def _output_text(output: Any) -> str:
    if isinstance(output, dict):  # older rollouts: {"output": "...", "metadata": {...}}
        return str(output.get("output", ""))
    return content_text(output)


class _Rollout:
    def __init__(self, file: InputFile, report: FileReport, ctx: ReadContext):
        self.file, self.report, self.ctx = file, report, ctx
        self.session_id: str | None = None
        self.project: str | None = None
        self.model: str | None = None
        self.approval: str | None = None
        self.pending: dict[str, dict[str, Any]] = {}
        self.done: dict[str, dict[str, Any]] = {}
        self.emitted: list[str] = []
        self.group = 0
        self.new_group = True
        self.processes: dict[int, str] = {}
        self.awaiting_tokens: list[dict[str, Any]] = []
        self.turns = Turns()

    def handle(self, rec: dict[str, Any], lineno: int) -> str | None:
        rtype = rec.get("type")
        if not isinstance(rtype, str):
            return "record without a type"
        if rtype not in RECORD_TYPES:
            self.report.note(f"unknown record type seen: {rtype[:40]}")
            return "unknown record type"
        p = rec.get("payload")
        if rtype in ("compacted", "world_state", "inter_agent_communication_metadata"):
            return None
        if not isinstance(p, dict):
            return "bad field: payload"
        ts = parse_ts_ms(rec.get("timestamp"))
        if rtype == "session_meta":
            if isinstance(p.get("id"), str) and self.session_id is None:
                self.session_id = p["id"]
            self.project = self.ctx.text(project_of(p.get("cwd"))) or self.project
        elif rtype == "turn_context":
            if isinstance(p.get("model"), str):
                self.model = p["model"]
            if isinstance(p.get("approval_policy"), str):
                self.approval = p["approval_policy"]
            self.project = self.ctx.text(project_of(p.get("cwd"))) or self.project
        elif rtype == "event_msg":
            self._event(p, ts)
        else:
            return self._item(p, ts, lineno)
        return None

    def _event(self, p: dict[str, Any], ts: int | None) -> None:
        etype = p.get("type")
        if etype == "token_count":
            info = p.get("info")
            last = info.get("last_token_usage") if isinstance(info, dict) else None
            if isinstance(last, dict):
                for row in self.awaiting_tokens:
                    row["context_tokens"] = as_int(last.get("input_tokens"))
                    row["output_tokens"] = as_int(last.get("output_tokens"))
                self.awaiting_tokens.clear()
        elif etype == "user_message" and ts is not None:
            self.turns.human(ts)
            self.new_group = True
        elif etype == "turn_aborted":
            for row in self.pending.values():
                row["interrupted"] = True

    def _item(self, p: dict[str, Any], ts: int | None, lineno: int) -> str | None:
        itype = p.get("type")
        if itype in CALL_TYPES:
            return self._call(p, ts, lineno)
        if itype in OUTPUT_TYPES:
            return self._output(p, ts)
        if itype != "reasoning":  # a message or a server-side item ends a parallel group
            self.new_group = True
            if itype == "message" and p.get("role") == "assistant":
                self.turns.activity(ts)
        return None

    def _call(self, p: dict[str, Any], ts: int | None, lineno: int) -> str | None:
        if ts is None:
            return "bad field: timestamp"
        call_id = p.get("call_id")
        if not isinstance(call_id, str) or not call_id:
            return "tool call without a call_id"
        name = "local_shell" if p["type"] == "local_shell_call" else p.get("name")
        if not isinstance(name, str) or not name:
            return "tool call without a name"
        namespace = p.get("namespace")
        if isinstance(namespace, str) and namespace.startswith("mcp__"):
            name = f"{namespace}__{name}"
        if call_id in self.pending or call_id in self.done:
            self.report.note("tool call repeated (kept the first)")
            return None
        args = _call_args(p, self.report)
        if self.new_group:
            self.group += 1
            self.new_group = False
        poll_of = None
        if name == "write_stdin" and isinstance(args, dict):
            poll_of = self.processes.get(as_int(args.get("session_id")))
        row = new_row(
            call_id=call_id,
            agent="codex",
            session_id=self.session_id,
            project=self.project,
            model=self.model,
            tool_name=name,
            args=self.ctx.args_json(args),
            input_chars=_input_chars(p, args),
            emitted_at=ts,
            parallel_group=str(self.group),
            poll_of=poll_of,
            permission_mode=self.approval,
            **self.turns.fields(),
            origin=origin(self.file, lineno),
        )
        self.pending[call_id] = row
        self.emitted.append(call_id)
        self.awaiting_tokens.append(row)
        self.turns.activity(ts)
        return None

    def _output(self, p: dict[str, Any], ts: int | None) -> str | None:
        if ts is None:
            return "bad field: timestamp"
        self.new_group = True
        call_id = p.get("call_id")
        row = self.pending.pop(call_id, None) if isinstance(call_id, str) else None
        if row is None:
            if call_id in self.done:
                self.report.note("tool output repeated (kept the first)")
            else:
                self.report.results_without_call += 1
            return None
        text = _output_text(p.get("output"))
        head = text[:400]
        wall = _WALL.search(head)
        code = _EXIT.search(head)
        running = _RUNNING.search(head)
        row["result_at"] = ts
        row["result_chars"] = len(text)
        row["internal_ms"] = float(wall.group(1)) * 1000.0 if wall else None
        row["exit_code"] = int(code.group(1)) if code else None
        aborted = text.strip() == "aborted"
        row["interrupted"] = row["interrupted"] or aborted
        row["is_error"] = bool((code and int(code.group(1)) != 0) or _FAILED.match(head) or aborted)
        if running:
            self.processes[int(running.group(1))] = row["poll_of"] or row["call_id"]
        self.done[call_id] = row
        self.turns.activity(ts)
        return None

    def finish(self) -> Iterator[dict[str, Any]]:
        if self.session_id is None:
            self.report.note("no session_meta: session id taken from the file name")
        sid = self.session_id or self.file.path.name.split(".")[0]
        self.report.without_result += len(self.pending)
        self.report.calls += len(self.done)
        for call_id in self.emitted:
            row = self.done.get(call_id)
            if row is not None:
                row["session_id"] = row["session_id"] or sid
                yield row
