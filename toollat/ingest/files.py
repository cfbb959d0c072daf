"""Files: walking input paths, reading gzip transparently, decoding JSON lines robustly.

Formats are recognised by content, never by file name, so ``.gz`` is detected by its magic
bytes and a directory walk visits every regular file (hidden files and folders excepted).

Input is untrusted, so reading is bounded: a line longer than ``MAX_LINE_BYTES`` is skipped
without ever being held in memory whole (a small ``.gz`` can hold a line of gigabytes), and a
record nested deeper than ``MAX_DEPTH`` is refused before any recursive code sees it.
"""
from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

GZIP_MAGIC = b"\x1f\x8b"
HEAD_BYTES = 256 * 1024
MAX_LINE_BYTES = 16 * 1024 * 1024  # default line-length limit; ``ingest(max_line_bytes=...)`` overrides it
MAX_DEPTH = 256                   # containers nested deeper than this are refused (Python recurses ~1,000)
LINE_TOO_LONG = "line too long"
TOO_DEEP = "nested too deep"
_SKIP_CHUNK = 1024 * 1024
BAD_GZIP_ERRORS = (OSError, EOFError, zlib.error)
_DECODER = json.JSONDecoder()


@dataclass(frozen=True)
class InputFile:
    path: Path
    source: str   # the top-level folder under the walked directory (see ``discover``)
    display: str  # path as shown in reports: relative to the walked directory


def discover(paths: list[Path]) -> list[InputFile]:
    """Expand files and directories into a sorted list of input files.

    ``source`` is the first folder below a walked directory (``sessions/<owner>__<repo>/...``
    gives ``<owner>__<repo>``; ``~/.claude/projects/<project>/...`` gives the project); for a
    file given directly, or lying directly in the walked directory, it is the parent folder's name.
    """
    out: list[InputFile] = []
    seen: set[Path] = set()
    for root in paths:
        root = Path(root).expanduser()
        if not root.exists():
            raise FileNotFoundError(f"no such file or directory: {root}")
        if root.is_file():
            candidates = [(root, root.resolve().parent.name, root.name)]
        else:
            candidates = []
            for p in sorted(root.rglob("*")):
                rel = p.relative_to(root)
                if any(part.startswith(".") for part in rel.parts) or not p.is_file():
                    continue
                source = rel.parts[0] if len(rel.parts) > 1 else root.resolve().name
                candidates.append((p, source, str(rel)))
        for p, source, display in candidates:
            key = p.resolve()
            if key not in seen:
                seen.add(key)
                out.append(InputFile(p, source, display))
    return out


def is_gzip(path: Path) -> bool:
    with open(path, "rb") as fh:
        return fh.read(2) == GZIP_MAGIC


def open_binary(path: Path):
    """Open a file for reading bytes, decompressing gzip transparently."""
    return gzip.open(path, "rb") if is_gzip(path) else open(path, "rb")


def read_head(path: Path, n: int = HEAD_BYTES) -> bytes:
    """The first ``n`` decompressed bytes.

    A gzip stream cut short yields what decompresses before the damage (the reader then counts
    the loss); only a file with nothing readable raises ``OSError``/``EOFError``/``zlib.error``.
    """
    chunks: list[bytes] = []
    got = 0
    with open_binary(path) as fh:
        try:
            while got < n:
                chunk = fh.read(min(64 * 1024, n - got))
                if not chunk:
                    break
                chunks.append(chunk)
                got += len(chunk)
        except BAD_GZIP_ERRORS:
            if not chunks:
                raise
    return b"".join(chunks)


def iter_lines(path: Path, max_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None, bool]]:
    """Yield ``(line_number, raw_line, is_last_without_newline)``; line numbers start at 1.

    A line longer than ``max_bytes`` comes as ``raw_line=None``: it is read in 1 MiB pieces and
    thrown away, so memory stays bounded whatever the input. A corrupt gzip stream ends the
    iteration by raising; callers count it.
    """
    with open_binary(path) as fh:
        prev: bytes | None = None
        prev_set = False
        n = 0
        while True:
            raw: bytes | None = fh.readline(max_bytes + 1)
            if not raw:
                break
            if len(raw) > max_bytes and not raw.endswith(b"\n"):
                raw = None  # over the limit: drain the rest of this line without keeping it
                while True:
                    rest = fh.readline(_SKIP_CHUNK)
                    if not rest or rest.endswith(b"\n"):
                        break
            if prev_set:
                yield n, prev, False
            n += 1
            prev, prev_set = raw, True
        if prev_set:
            yield n, prev, prev is not None and not prev.endswith(b"\n")


def count_lines(path: Path) -> int:
    """Lines in a file (gzip or not), counted in fixed-size chunks: no line is materialised."""
    n = 0
    last = b"\n"
    with open_binary(path) as fh:
        while chunk := fh.read(_SKIP_CHUNK):
            n += chunk.count(b"\n")
            last = chunk[-1:]
    return n + (last != b"\n")


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True if lists/dicts inside ``value`` nest deeper than ``limit`` (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            children = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        if depth > limit:
            return True
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))
    return False


class LineError(Exception):
    """A line that does not hold a JSON object; ``reason`` is what the report counts."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def decode_line(raw: bytes | None, last_without_newline: bool = False) -> tuple[list[dict[str, Any]], list[str]]:
    """Decode one JSON line into records, recovering what can be recovered.

    Returns the records and notes (e.g. two records glued together when a log slice lacked its
    final newline). Raises ``LineError`` with a countable reason when nothing can be used;
    ``raw=None`` is the line ``iter_lines`` found too long.
    """
    if raw is None:
        raise LineError(LINE_TOO_LONG)
    notes: list[str] = []
    text_line = raw.strip()
    if not text_line:
        raise LineError("blank line")
    try:
        obj = orjson.loads(text_line)
        objs = [obj]
    except orjson.JSONDecodeError:
        try:
            text = text_line.decode("utf-8")
        except UnicodeDecodeError:
            text = text_line.decode("utf-8", errors="replace")
            notes.append("invalid UTF-8 replaced")
        objs = []
        pos = 0
        try:
            while pos < len(text):
                obj, pos = _DECODER.raw_decode(text, pos)
                objs.append(obj)
                while pos < len(text) and text[pos] in " \t\r":
                    pos += 1
        except RecursionError:  # the stdlib decoder recurses per bracket; orjson had refused it too
            raise LineError(TOO_DEEP) from None
        except json.JSONDecodeError:
            if objs:
                notes.append("trailing garbage after a record dropped")
            elif last_without_newline:
                raise LineError("truncated last line") from None
            else:
                raise LineError("invalid JSON") from None
        if len(objs) > 1:
            notes.append("concatenated records split")
    # Only a line with at least MAX_DEPTH brackets can nest that deep; the count is cheap.
    if text_line.count(b"[") + text_line.count(b"{") >= MAX_DEPTH and any(too_deep(o) for o in objs):
        raise LineError(TOO_DEEP)
    records = [o for o in objs if isinstance(o, dict)]
    if not records:
        raise LineError("not a JSON object")
    if len(records) < len(objs):
        notes.append("non-object value dropped")
    return records, notes


def text_length(content: Any) -> int:
    """Characters of a tool result's content: a string, or a list of text/image blocks."""
    if isinstance(content, str):
        return len(content)
    if isinstance(content, list):
        n = 0
        for block in content:
            if isinstance(block, dict):
                t = block.get("text")
                if isinstance(t, str):
                    n += len(t)
            elif isinstance(block, str):
                n += len(block)
        return n
    return 0


def content_text(content: Any, limit: int | None = None) -> str:
    """The text of a tool result's content, joined (optionally only the first ``limit`` chars)."""
    if isinstance(content, str):
        return content[:limit] if limit else content
    parts: list[str] = []
    if isinstance(content, list):
        for block in content:
            if isinstance(block, dict) and isinstance(block.get("text"), str):
                parts.append(block["text"])
            elif isinstance(block, str):
                parts.append(block)
    text = "\n".join(parts)
    return text[:limit] if limit else text

