"""The ``toollat`` command line: ingest, evaluate, predict, serve, simulate, harvest.

Each command is a thin shell around a library function; heavy imports happen inside the
command so ``toollat --help`` stays fast.
"""
from __future__ import annotations

import json
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


def _data(paths: list[Path], progress: bool):
    """Calls from raw logs, directories, TraceLab files or canonical Parquet tables."""
    from toollat.ingest import load_calls

    missing = [str(p) for p in paths if not Path(p).exists()]
    if missing:
        fail(f"no such file or directory: {', '.join(missing)}")
    df, _ = load_calls(paths, progress=progress)
    if len(df) == 0:
        fail("no tool calls found in --data", 1)
    return df


def _bundle(model: str):
    from toollat.bundle import BundleError, load_bundle

    try:
        return load_bundle(model)
    except BundleError as e:
        fail(str(e))


@app.command()
def evaluate(
    model: Annotated[str, typer.Option("--model", "-m", help="Bundle directory, or a name under models/ (default).")] = "default",
    data: Annotated[list[Path] | None, typer.Option("--data", "-d", help="Logs, directories, TraceLab files or a canonical .parquet.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {n, models, per_family} as JSON.")] = False,
) -> None:
    """Score a model and the baselines side by side on calls it never saw."""
    from toollat.evaluation.evaluate import evaluate_bundle
    from toollat.training import metrics_table

    if not data:
        fail("give --data PATH (logs, directories or a calls .parquet)")
    bundle = _bundle(model)
    df = _data(list(data), progress=not as_json and sys.stderr.isatty())
    result = evaluate_bundle(bundle, df, progress=not as_json and sys.stderr.isatty())
    if result["n"] == 0:
        fail(f"none of the calls is in the model's scope {result['scope']}", 1)
    if as_json:
        print(json.dumps(result, indent=1, default=_json_default))
    else:
        out = Console(width=max(Console().width, 100))
        out.print(f"model {bundle.name} ({bundle.version}); scope {result['scope']}")
        out.print(metrics_table("unseen calls", result))


def _json_default(v):
    if isinstance(v, float) and v != v:
        return None
    return str(v)


@app.command()
def predict(
    tool: Annotated[str, typer.Argument(help="Tool name, e.g. Bash, Read, exec_command.")],
    args_json: Annotated[str, typer.Argument(help='Tool arguments as JSON, e.g. \'{"command": "pytest -x"}\'.')] = "{}",
    model: Annotated[str, typer.Option("--model", "-m", help="Bundle directory, or a name under models/.")] = "default",
    as_json: Annotated[bool, typer.Option("--json", help="Print the prediction as JSON.")] = False,
) -> None:
    """Predict one call's latency and the KV-cache hint."""
    from toollat.predictor import Predictor

    try:
        call_args = json.loads(args_json)
    except json.JSONDecodeError as e:
        fail(f"ARGS_JSON is not valid JSON: {e.msg} at column {e.colno}")
    if not isinstance(call_args, dict):
        fail("ARGS_JSON must be a JSON object")
    p = Predictor(_bundle(model))
    pr = p.predict({"tool": tool, "args": call_args})
    if as_json:
        print(json.dumps(pr.to_dict(), indent=1))
        return
    q = "  ".join(f"{k} {_fmt_ms(v)}" for k, v in pr.quantiles.items())
    print(f"{tool}: p50 {_fmt_ms(pr.p50_ms)}, p90 {_fmt_ms(pr.p90_ms)}, P(>=60 s) {pr.p_long:.2f}")
    print(f"  quantiles: {q}")
    print(f"  hint: {pr.hint.action}" + (f" (ttl {_fmt_ms(pr.hint.ttl_ms)})" if pr.hint.action != "drop" else ""))
    if pr.fallback:
        print(f"  note: tool not seen in training ({pr.fallback} fallback)")
    print(f"  model: {p.bundle.name} {p.model_version}")


def _fmt_ms(ms: float) -> str:
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


def main() -> None:  # pragma: no cover - console script entry point
    app()


if __name__ == "__main__":
    app()
