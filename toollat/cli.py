"""The ``toollat`` command line: ingest, evaluate, predict, serve, simulate, harvest.

Each command is a thin shell around a library function; heavy imports happen inside the
command so ``toollat --help`` stays fast.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

app = typer.Typer(
    help="Predict how long a coding agent's tool call will block.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)


@app.callback()
def _root() -> None:
    """Predict how long a coding agent's tool call will block."""


def fail(message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}")
    raise typer.Exit(code)


@app.command()
def ingest(
    paths: Annotated[list[Path] | None, typer.Argument(help="Log files or directories (any supported format, .gz ok).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")] = Path("calls.parquet"),
    local: Annotated[bool, typer.Option("--local", help="Also read this user's own Claude Code and Codex logs.")] = False,
    no_redact: Annotated[bool, typer.Option("--no-redact", help="Keep home paths, e-mails and tokens in arguments.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
) -> None:
    """Read agent logs into the canonical calls table (Parquet) and say what was read and skipped."""
    from toollat.ingest import ingest as run_ingest, write_calls
    from toollat.ingest.local import find_local_logs, local_log_dirs

    inputs = list(paths or [])
    if local:
        found = find_local_logs()
        if not found:
            console.print("no local agent logs found; looked in: " + ", ".join(str(d) for d in local_log_dirs()))
        inputs += found
    if not inputs:
        fail("give log files or directories, or --local")
    try:
        result = run_ingest(inputs, redact=not no_redact, progress=not as_json and sys.stderr.isatty())
    except FileNotFoundError as e:
        fail(str(e))
    if result.table.num_rows == 0:
        result.report.render(console)
        fail("no tool calls found in the given paths", 1)
    write_calls(result.table, out)
    result.report.out = str(out)
    if as_json:
        print(result.report.to_json())
    else:
        result.report.render(Console())


def main() -> None:  # pragma: no cover - console script entry point
    app()


if __name__ == "__main__":
    app()
