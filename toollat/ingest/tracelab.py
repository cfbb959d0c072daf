"""TraceLab's normalized round format: JSONL rows (``.jsonl`` / ``.jsonl.gz``) and the release DuckDB.

A row is one LLM round: ``provider, project, session_id, round_index, model,
input_tokens_total, output_tokens, timing_events[], tools[]``. Each ``tools[]`` entry is a call
(``tool_call_id, tool_name, emitted_at, result_at, tool_wall_latency_ms,
tool_internal_latency_ms, is_error, input_chars, result_chars`` and, in private rows only,
``input``). The calls of one round are one parallel group. Public rows carry no ``input``, so
``args`` is null for them. The same rounds read in both forms are recognised as copies
(``COPY_KEY``: round and tool index, tool name, timestamps, sizes and token counts) and kept once.

The release DuckDB holds the same data in tables ``rounds`` (surrogate key ``round_pk``),
``tool_calls``, ``timing_events`` and ``trace_source``; ``round_id`` and ``trace_key`` are not
unique, so everything joins on ``round_pk``. Both readers feed rounds, in the same shape, to
``_Rounds.add`` so they give the same table. ``write_release_duckdb`` writes that schema from
JSONL rows (the tests build their DuckDB fixture with it).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from toollat.core.timestamps import parse_ts_ms

from .base import ReadContext, Turns, as_int, drive_json_lines, new_row
from .files import InputFile, decode_line, iter_lines
from .report import FileReport
from .table import COPY_KEY

AGENTS = {"claude": "claude_code", "claude_code": "claude_code", "codex": "codex"}
DUCKDB_MAGIC = b"DUCK"  # at byte offset 8 of a DuckDB database file

ROUND_COLUMNS: dict[str, str] = {
    "round_pk": "BIGINT", "provider": "VARCHAR", "project": "VARCHAR", "session_id": "VARCHAR",
    "session_file": "VARCHAR", "round_index": "INTEGER", "round_id": "VARCHAR", "model": "VARCHAR",
    "input_tokens_total": "BIGINT", "prefix_tokens": "BIGINT", "newly_append_tokens": "BIGINT",
    "claude_uncached_input_tokens": "BIGINT", "claude_cache_creation_input_tokens": "BIGINT",
    "claude_cache_read_input_tokens": "BIGINT", "output_tokens": "BIGINT",
    "reasoning_output_tokens": "BIGINT", "current_input_event_count": "INTEGER",
    "current_user_message_count": "INTEGER", "current_tool_result_count": "INTEGER",
    "current_user_message_chars": "BIGINT", "current_tool_result_chars": "BIGINT",
    "current_input_chars": "BIGINT", "first_input_event_type": "VARCHAR", "trace_key": "VARCHAR",
}
TOOL_COLUMNS: dict[str, str] = {
    "round_pk": "BIGINT", "tool_index": "INTEGER", "tool_name": "VARCHAR", "tool_call_id": "VARCHAR",
    "emitted_at": "TIMESTAMPTZ", "result_at": "TIMESTAMPTZ", "tool_wall_latency_ms": "DOUBLE",
    "tool_internal_latency_ms": "DOUBLE", "is_error": "BOOLEAN", "input_chars": "BIGINT",
    "result_chars": "BIGINT",
}
EVENT_COLUMNS: dict[str, str] = {
    "round_pk": "BIGINT", "event_index": "INTEGER", "event_type": "VARCHAR", "source": "VARCHAR",
    "timestamp": "TIMESTAMPTZ", "tool_call_id": "VARCHAR", "tool_index": "INTEGER",
    "tool_name": "VARCHAR", "is_error": "BOOLEAN", "result_chars": "BIGINT", "content_chars": "BIGINT",
}


def _ms(value: Any) -> int | None:
    """A timestamp as epoch ms, whether ISO text, epoch ms (from SQL) or a datetime."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, datetime):
        return round(value.timestamp() * 1000)
    return parse_ts_ms(value)


def is_round_row(rec: dict[str, Any]) -> bool:
    return "round_index" in rec and "session_id" in rec and "tools" in rec


class _Rounds:
    """Turns rounds into rows, tracking each session's human turns across rounds."""

    def __init__(self, file: InputFile, report: FileReport, ctx: ReadContext):
        self.file, self.report, self.ctx = file, report, ctx
        self.rows: list[dict[str, Any]] = []
        self.sessions: dict[str, Turns] = {}
        self.last_round: dict[str, int] = {}

    def add(self, rnd: dict[str, Any], where: str) -> str | None:
        """One round; returns None if used, else the reason it was not."""
        sid, tools, events = rnd.get("session_id"), rnd.get("tools"), rnd.get("timing_events") or []
        if not isinstance(sid, str) or not sid:
            return "bad field: session_id"
        if not isinstance(tools, list):
            return "bad field: tools"
        if not isinstance(events, list):
            self.report.note("bad field: timing_events (ignored)")
            events = []
        turns = self.sessions.setdefault(sid, Turns())
        ridx = as_int(rnd.get("round_index"))
        if ridx is None:
            return "bad field: round_index"
        if ridx < self.last_round.get(sid, -1):
            self.report.note("rounds of a session out of order")
        self.last_round[sid] = ridx
        for ev in sorted((e for e in events if isinstance(e, dict)), key=lambda e: _ms(e.get("timestamp")) or 0):
            ts = _ms(ev.get("timestamp"))
            if ts is None:
                continue
            if ev.get("event_type") == "user_message":
                turns.human(ts)
            else:
                turns.activity(ts)
        provider = rnd.get("provider") if isinstance(rnd.get("provider"), str) else None
        project = rnd.get("project") if isinstance(rnd.get("project"), str) else None
        for tool in tools:
            if not isinstance(tool, dict):
                self.report.note("tool entry not an object (ignored)")
                continue
            row = self._row(rnd, tool, sid, ridx, provider, project, turns, where)
            if row is None:
                self.report.without_result += 1
                continue
            self.rows.append(row)
            self.report.calls += 1
            turns.activity(row["result_at"])
        return None

    def _row(self, rnd, tool, sid, ridx, provider, project, turns: Turns, where) -> dict[str, Any] | None:
        emitted = _ms(tool.get("emitted_at"))
        result = _ms(tool.get("result_at"))
        wall = tool.get("tool_wall_latency_ms")
        if result is None and emitted is not None and isinstance(wall, (int, float)):
            result = emitted + int(wall)
        name = tool.get("tool_name")
        if emitted is None or result is None or not isinstance(name, str):
            return None
        call_id = tool.get("tool_call_id")
        if not isinstance(call_id, str) or not call_id:
            call_id = f"{sid}:{ridx}:{tool.get('tool_index')}"
            self.report.note("tool without tool_call_id (id made from session, round, index)")
        internal = tool.get("tool_internal_latency_ms")
        row = new_row(
            call_id=call_id,
            agent=AGENTS.get(provider or "", provider or "unknown"),
            session_id=sid,
            project=self.ctx.text(project),
            model=rnd.get("model") if isinstance(rnd.get("model"), str) else None,
            tool_name=name,
            args=self.ctx.args_json(tool["input"]) if "input" in tool else None,
            input_chars=as_int(tool.get("input_chars")),
            emitted_at=emitted,
            result_at=result,
            internal_ms=float(internal) if isinstance(internal, (int, float)) and not isinstance(internal, bool) else None,
            is_error=tool.get("is_error") is True,
            result_chars=as_int(tool.get("result_chars")),
            parallel_group=str(ridx),
            context_tokens=as_int(rnd.get("input_tokens_total")),
            output_tokens=as_int(rnd.get("output_tokens")),
            **turns.fields(),
            origin=where,
        )
        if project:
            row["source"] = project
        # The private and public forms of a round share everything but ids and names (the public
        # one pseudonymizes them), so a copy is recognised by what pseudonymization leaves alone.
        row[COPY_KEY] = "|".join(str(v) for v in (
            provider, ridx, tool.get("tool_index"), name, emitted, result, as_int(tool.get("input_chars")),
            as_int(tool.get("result_chars")), as_int(rnd.get("input_tokens_total")), as_int(rnd.get("output_tokens"))))
        return row


class TraceLabJsonlReader:
    name = "tracelab_jsonl"

    def sniff(self, records: list[dict[str, Any]]) -> bool:
        return any(is_round_row(r) for r in records)

    def read(self, file: InputFile, report: FileReport, ctx: ReadContext) -> Iterator[dict[str, Any]]:
        rounds = _Rounds(file, report, ctx)
        drive_json_lines(file, report, lambda rec, n: rounds.add(rec, f"{file.display}:{n}"), ctx.max_line_bytes)
        yield from rounds.rows


def _select(con, table: str, wanted: dict[str, str], order: str) -> tuple[list[str], list[tuple]]:
    """Rows of ``table`` with timestamp columns as epoch ms; absent columns read as NULL."""
    have = {r[0]: r[1] for r in con.execute(f"DESCRIBE {table}").fetchall()}
    cols = []
    for c in wanted:
        if c not in have:
            cols.append(f"NULL AS {c}")
        elif have[c].upper().startswith("TIMESTAMP"):
            cols.append(f"epoch_ms({c}) AS {c}")
        else:
            cols.append(c)
    rows = con.execute(f"SELECT {', '.join(cols)} FROM {table} ORDER BY {order}").fetchall()
    return list(wanted), rows


class TraceLabDuckDBReader:
    name = "tracelab_duckdb"

    def sniff(self, records: list[dict[str, Any]]) -> bool:  # recognised by magic bytes instead
        return False

    def read(self, file: InputFile, report: FileReport, ctx: ReadContext) -> Iterator[dict[str, Any]]:
        import duckdb

        con = duckdb.connect(str(file.path), read_only=True)
        try:
            tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
            missing = {"rounds", "tool_calls"} - tables
            if missing:
                report.unsupported = f"DuckDB without TraceLab tables {sorted(missing)}"
                report.format = None
                return
            rcols, rrows = _select(con, "rounds", ROUND_COLUMNS, "round_pk")
            tcols, trows = _select(con, "tool_calls", TOOL_COLUMNS, "round_pk, tool_index")
            ecols, erows = ([], [])
            if "timing_events" in tables:
                ecols, erows = _select(con, "timing_events", EVENT_COLUMNS, "round_pk, event_index")
        finally:
            con.close()
        tools_of: dict[int, list[dict]] = {}
        for t in trows:
            d = dict(zip(tcols, t))
            tools_of.setdefault(d.pop("round_pk"), []).append(d)
        events_of: dict[int, list[dict]] = {}
        for e in erows:
            d = dict(zip(ecols, e))
            events_of.setdefault(d.pop("round_pk"), []).append(d)
        rounds = _Rounds(file, report, ctx)
        known: set[int] = set()
        for r in rrows:
            rnd = dict(zip(rcols, r))
            pk = rnd["round_pk"]
            known.add(pk)
            rnd["tools"] = tools_of.get(pk, [])
            rnd["timing_events"] = events_of.get(pk, [])
            report.lines += 1
            reason = rounds.add(rnd, f"{file.display}#round_pk={pk}")
            if reason is None:
                report.parsed += 1
            else:
                report.skip(reason)
        orphans = sum(len(v) for pk, v in tools_of.items() if pk not in known)
        if orphans:
            report.lines += orphans
            report.skip("tool_calls row without its round", orphans)
        yield from rounds.rows


def iter_round_rows(paths: Iterable[Path]) -> Iterator[dict[str, Any]]:
    """TraceLab rows from JSONL files (undecodable lines are skipped)."""
    for path in paths:
        for _, raw, last in iter_lines(Path(path)):
            try:
                records, _ = decode_line(raw, last)
            except Exception:
                continue
            yield from (r for r in records if is_round_row(r))


def write_release_duckdb(jsonl_paths: Iterable[Path], db_path: Path) -> int:
    """Write TraceLab rows into a DuckDB file with the release's tables; returns rounds written."""
    import duckdb

    db_path = Path(db_path)
    if db_path.exists():
        db_path.unlink()
    con = duckdb.connect(str(db_path))
    try:
        for name, cols in (("rounds", ROUND_COLUMNS), ("tool_calls", TOOL_COLUMNS), ("timing_events", EVENT_COLUMNS)):
            con.execute(f"CREATE TABLE {name} ({', '.join(f'{c} {t}' for c, t in cols.items())})")
        con.execute("CREATE TABLE trace_source (path VARCHAR)")
        rounds, tools, events, sources = [], [], [], []
        for pk, row in enumerate(iter_round_rows(jsonl_paths)):
            rounds.append([pk if c == "round_pk" else row.get(c) for c in ROUND_COLUMNS])
            for t in row.get("tools") or []:
                tools.append([pk if c == "round_pk" else t.get(c) for c in TOOL_COLUMNS])
            for i, e in enumerate(row.get("timing_events") or []):
                events.append([pk if c == "round_pk" else i if c == "event_index" else e.get(c) for c in EVENT_COLUMNS])
            if row.get("session_file") and row["session_file"] not in sources:
                sources.append(row["session_file"])
        for name, cols, data in (("rounds", ROUND_COLUMNS, rounds), ("tool_calls", TOOL_COLUMNS, tools),
                                 ("timing_events", EVENT_COLUMNS, events)):
            if data:
                con.executemany(f"INSERT INTO {name} VALUES ({', '.join('?' * len(cols))})", data)
        if sources:
            con.executemany("INSERT INTO trace_source VALUES (?)", [[s] for s in sources])
    finally:
        con.close()
    return len(rounds)
