"""What an ingest read and what it skipped, and why.

Every input line (or database row) is accounted for: ``lines == parsed + sum(skipped)`` for each
file, and the report checks it. ``notes`` count things that did not cost a line (a line holding
two concatenated records, an unknown record type, a field of the wrong type that was ignored).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any


@dataclass
class FileReport:
    path: str
    source: str
    format: str | None = None          # reader name; None when unsupported
    unsupported: str | None = None     # what the file looked like, when no reader takes it
    lines: int = 0
    parsed: int = 0
    skipped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    calls: int = 0                      # calls with a result, before cross-file de-duplication
    without_result: int = 0             # emitted, never answered (session ended, log cut)
    results_without_call: int = 0       # answered, but the emission is not in the file

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] += n

    def note(self, what: str, n: int = 1) -> None:
        self.notes[what] += n

    @property
    def balanced(self) -> bool:
        return self.lines == self.parsed + sum(self.skipped.values())


@dataclass
class IngestReport:
    files: list[FileReport] = field(default_factory=list)
    duplicates_dropped: int = 0         # same call_id read again (forked / resumed sessions)
    duplicates_by_agent: dict[str, int] = field(default_factory=dict)
    table_notes: Counter = field(default_factory=Counter)  # found when the table is assembled
    redactions: Counter = field(default_factory=Counter)
    redacted: bool = True
    calls_by_agent: dict[str, int] = field(default_factory=dict)
    sessions_by_agent: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    out: str | None = None

    # -- aggregates ---------------------------------------------------------------------
    def files_by_format(self) -> Counter:
        return Counter(f.format or "unsupported" for f in self.files)

    def unsupported(self) -> list[FileReport]:
        return [f for f in self.files if f.format is None]

    def total(self, attr: str) -> int:
        return sum(getattr(f, attr) for f in self.files)

    def skipped(self) -> Counter:
        out: Counter = Counter()
        for f in self.files:
            out.update(f.skipped)
        return out

    def notes(self) -> Counter:
        out: Counter = Counter(self.table_notes)
        for f in self.files:
            out.update(f.notes)
        return out

    def unbalanced(self) -> list[str]:
        return [f.path for f in self.files if not f.balanced]

    def to_dict(self) -> dict[str, Any]:
        return {
            "files": len(self.files),
            "files_by_format": dict(self.files_by_format()),
            "calls_by_agent": self.calls_by_agent,
            "sessions_by_agent": self.sessions_by_agent,
            "calls": sum(self.calls_by_agent.values()),
            "lines": self.total("lines"),
            "lines_parsed": self.total("parsed"),
            "lines_skipped": dict(self.skipped()),
            "notes": dict(self.notes()),
            "calls_without_result": self.total("without_result"),
            "results_without_call": self.total("results_without_call"),
            "duplicates_dropped": self.duplicates_dropped,
            "duplicates_by_agent": self.duplicates_by_agent,
            "unsupported": {f.path: f.unsupported for f in self.unsupported()},
            "redacted": self.redacted,
            "redactions": dict(self.redactions),
            "unbalanced_files": self.unbalanced(),
            "seconds": round(self.seconds, 2),
            "out": self.out,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    def render(self, console) -> None:
        """Print the summary as rich tables (the CLI's output)."""
        from rich.table import Table

        d = self.to_dict()
        console.print(
            f"[bold]Read {d['files']} files[/bold] in {d['seconds']:.1f} s: "
            + ", ".join(f"{k} {v}" for k, v in sorted(d["files_by_format"].items()))
        )
        t = Table(title="Calls with a result, by agent", show_edge=False)
        t.add_column("agent")
        t.add_column("calls (unique call_id)", justify="right")
        t.add_column("copies dropped", justify="right")
        t.add_column("sessions", justify="right")
        for agent in sorted(self.calls_by_agent):
            t.add_row(agent, f"{self.calls_by_agent[agent]:,}", f"{self.duplicates_by_agent.get(agent, 0):,}",
                      f"{self.sessions_by_agent.get(agent, 0):,}")
        console.print(t)
        lines = Table(title="Lines", show_edge=False)
        lines.add_column("outcome")
        lines.add_column("count", justify="right")
        lines.add_row("read", f"{d['lines']:,}")
        lines.add_row("parsed", f"{d['lines_parsed']:,}")
        for reason, n in sorted(d["lines_skipped"].items(), key=lambda kv: -kv[1]):
            lines.add_row(f"skipped: {reason}", f"{n:,}")
        for what, n in sorted(d["notes"].items(), key=lambda kv: -kv[1]):
            lines.add_row(f"note: {what}", f"{n:,}")
        console.print(lines)
        console.print(
            f"calls without a result: {d['calls_without_result']:,}   "
            f"results without their call: {d['results_without_call']:,}   "
            f"copies dropped: {d['duplicates_dropped']:,} (a forked or resumed session repeats "
            "its history, call ids and timestamps included; each call is kept once)"
        )
        if self.redacted:
            red = ", ".join(f"{k} {v:,}" for k, v in sorted(self.redactions.items())) or "nothing found"
            console.print(f"redacted: {red}  (--no-redact keeps arguments as logged)")
        else:
            console.print("[yellow]redaction off: arguments are kept as logged[/yellow]")
        if d["unsupported"]:
            u = Table(title=f"Unsupported files ({len(d['unsupported'])})", show_edge=False)
            u.add_column("file", overflow="fold")
            u.add_column("looks like")
            for path, what in d["unsupported"].items():
                u.add_row(path, what)
            console.print(u)
        if d["unbalanced_files"]:
            console.print(f"[red]line accounting does not balance for: {d['unbalanced_files']}[/red]")
        if self.out:
            console.print(f"wrote [bold]{self.out}[/bold] ({sum(self.calls_by_agent.values()):,} calls)")
