"""The reader protocol, and the pieces every reader shares.

A reader recognises its format from the first records of a file (``sniff``) and turns the file
into row dicts of the canonical table (``read``), accounting for every line in the file's
``FileReport``. Readers are registered once, in ``registry.py``.
"""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from .files import BAD_GZIP_ERRORS, MAX_LINE_BYTES, TOO_DEEP, InputFile, LineError, decode_line, iter_lines
from .redact import redact_text, redact_value
from .report import FileReport
from .table import READER_DEFAULTS


@dataclass
class ReadContext:
    """What readers need besides the file: redaction settings, limits and counters."""

    redact: bool = True
    redactions: Counter = field(default_factory=Counter)
    max_line_bytes: int = MAX_LINE_BYTES

    def args_json(self, value: Any) -> str:
        """Tool input -> JSON text, redacted unless redaction is off."""
        if self.redact:
            value = redact_value(value, self.redactions)
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))

    def text(self, value: str | None) -> str | None:
        if value is None or not self.redact:
            return value
        return redact_text(value, self.redactions)


class Reader(Protocol):
    name: str

    def sniff(self, records: list[dict[str, Any]]) -> bool:
        """True if these first records of a file are in this reader's format."""

    def read(self, file: InputFile, report: FileReport, ctx: ReadContext) -> Iterator[dict[str, Any]]:
        """Rows of the canonical table; every line of the file counted in ``report``."""


class Turns:
    """One session's human turns, tracked as its records go by (every reader uses this).

    ``human(ts)`` marks a person's message; ``activity(ts)`` anything the agent or a tool did.
    A call emitted now carries ``fields()``: how many turns began so far, when the current one
    began, and when the agent last did something before it (the end of the previous turn)."""

    __slots__ = ("index", "started", "prev_end", "last_activity", "active")

    def __init__(self) -> None:
        self.index = 0
        self.started: int | None = None
        self.prev_end: int | None = None
        self.last_activity: int | None = None
        self.active = False

    def activity(self, ts: int | None) -> None:
        if ts is not None:
            self.last_activity = ts if self.last_activity is None else max(self.last_activity, ts)
            self.active = True

    def human(self, ts: int) -> None:
        if self.active:
            self.prev_end = self.last_activity
            self.index += 1
        elif self.index == 0:
            self.index = 1
        self.started = ts
        self.active = False

    def fields(self) -> dict[str, Any]:
        return {"turn_index": self.index, "turn_started_at": self.started, "prev_turn_ended_at": self.prev_end}


def new_row(**fields: Any) -> dict[str, Any]:
    row = dict(READER_DEFAULTS)
    row.update(fields)
    return row


def project_of(cwd: Any) -> str | None:
    """Last folder of a working directory, POSIX or Windows."""
    if not isinstance(cwd, str) or not cwd.strip():
        return None
    parts = [p for p in cwd.replace("\\", "/").rstrip("/").split("/") if p]
    return parts[-1] if parts else None


def as_int(value: Any) -> int | None:
    """An int from a JSON number; None for anything else (bools included)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value)


Handler = Callable[[dict[str, Any], int], "str | None"]


def drive_json_lines(file: InputFile, report: FileReport, handle: Handler, max_line_bytes: int = MAX_LINE_BYTES) -> None:
    """Feed each record of a JSON-lines file to ``handle(record, line_number)``.

    ``handle`` returns None when it used (or knowingly ignored) the record, or the reason it
    could not. A line is *parsed* when any of its records was usable, otherwise *skipped* with
    the reason; the reasons of unusable records sharing a line with usable ones are noted.
    Lines over ``max_line_bytes`` are skipped unread (``iter_lines``).
    """
    try:
        for lineno, raw, last in iter_lines(file.path, max_line_bytes):
            report.lines += 1
            try:
                records, notes = decode_line(raw, last)
            except LineError as e:
                report.skip(e.reason)
                continue
            for n in notes:
                report.note(n)
            try:
                reasons = [handle(rec, lineno) for rec in records]
            except RecursionError:  # a value nested in a string field (e.g. JSON-text arguments)
                report.skip(TOO_DEEP)
                continue
            if any(r is None for r in reasons):
                report.parsed += 1
                for r in reasons:
                    if r is not None:
                        report.note(f"{r} (record sharing a line)")
            else:
                report.skip(reasons[0])
    except BAD_GZIP_ERRORS as e:
        report.note(f"rest of file unreadable ({type(e).__name__}: {e})")


def origin(file: InputFile, lineno: int) -> str:
    return f"{file.display}:{lineno}"
