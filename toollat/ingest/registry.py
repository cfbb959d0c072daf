"""The one reader registry: which reader takes a file, decided by its content.

``detect`` looks at a file's first bytes (after gzip, recognised by magic): a DuckDB header
goes to the TraceLab DuckDB reader; otherwise the first JSON lines (bounded in length and
number) are offered to each reader's ``sniff`` in order. Files no reader takes are named with what they look like
(``UNSUPPORTED`` recognises the agent formats toollat knowingly does not read).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .base import Reader
from .claude_code import ClaudeCodeReader
from .codex import CodexReader
from .files import BAD_GZIP_ERRORS, HEAD_BYTES, LineError, decode_line, iter_lines, read_head
from .tracelab import DUCKDB_MAGIC, TraceLabDuckDBReader, TraceLabJsonlReader

READERS: list[Reader] = [ClaudeCodeReader(), CodexReader(), TraceLabJsonlReader()]
DUCKDB_READER: Reader = TraceLabDuckDBReader()

SNIFF_LINES = 50
MAX_SNIFF_BYTES = 16 * 1024 * 1024

# Formats seen in agent logs that toollat does not read: (description, test on first records).
UNSUPPORTED: list[tuple[str, Callable[[list[dict[str, Any]]], bool]]] = [
    ("Copilot CLI event log", lambda recs: any(
        isinstance(r.get("type"), str) and "." in r["type"] and "data" in r and "id" in r for r in recs)),
]


def _json_document_kind(head: bytes) -> str | None:
    text = head.lstrip()[:4096]
    if not text.startswith((b"{", b"[")):
        return None
    if b'"sessionId"' in text and b'"messages"' in text and (b'"projectHash"' in text or b'"gemini"' in head):
        return "Gemini CLI session document (JSON)"
    return "JSON document, not a log"


def _first_records(path: Path, max_line_bytes: int) -> list[dict[str, Any]]:
    """Decode the first lines (up to ``SNIFF_LINES``, and past ``HEAD_BYTES`` only until one
    record is found). A line over ``max_line_bytes`` is stepped over unread, so a huge first
    line neither fills memory nor hides the log records after it."""
    records: list[dict[str, Any]] = []
    consumed = 0
    try:
        for lineno, raw, _ in iter_lines(path, max_line_bytes):
            consumed += len(raw) if raw is not None else max_line_bytes
            try:
                recs, _ = decode_line(raw)
            except LineError:
                recs = []
            records.extend(recs)
            if lineno >= SNIFF_LINES or (records and consumed >= HEAD_BYTES):
                break
    except BAD_GZIP_ERRORS:  # damage later in the stream: judge by what came before it
        if not consumed:
            raise
    return records


def detect(path: Path, max_line_bytes: int = MAX_SNIFF_BYTES) -> tuple[Reader | None, str | None]:
    """(reader, None) for a readable file, else (None, what the file looks like).

    Lines longer than ``max_line_bytes`` (at most ``MAX_SNIFF_BYTES``) are not looked at."""
    try:
        head = read_head(path, HEAD_BYTES + 1)
        if not head:
            return None, "empty file"
        if head[8:12] == DUCKDB_MAGIC:
            return DUCKDB_READER, None
        if b"\x00" in head[:8192]:
            return None, "binary file"
        records = _first_records(path, min(max_line_bytes, MAX_SNIFF_BYTES))
    except BAD_GZIP_ERRORS as e:
        return None, f"unreadable ({type(e).__name__})"
    if records:
        for reader in READERS:
            if reader.sniff(records):
                return reader, None
        for description, test in UNSUPPORTED:
            if test(records):
                return None, description
    doc = _json_document_kind(head)
    if doc:
        return None, doc
    if records:
        return None, "JSON lines in an unrecognised format"
    text = head.decode("utf-8", errors="replace")
    if text.count("\ufffd") > max(2, len(text) // 100):
        return None, "binary file"
    return None, "text, not JSON lines"
