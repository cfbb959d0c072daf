"""The ``toollat`` command line: ingest, evaluate, predict, serve, simulate, replay, harvest.

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
console = Console(stderr=True, soft_wrap=True)  # messages are never wrapped mid-sentence


def _version(value: bool) -> None:
    if value:
        from toollat import __version__

        print(f"toollat {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only errors on stderr (no progress, no notes).")] = False,
) -> None:
    """Predict how long a coding agent's tool call will block."""
    import logging
    import os

    # Library chatter (transformers' weight-loading bars, Hydra/MLflow log lines) stays out of
    # every command's output.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    for name in ("transformers", "sentence_transformers", "mlflow", "huggingface_hub", "distributed"):
        logging.getLogger(name).setLevel(logging.ERROR)
    if quiet:
        console.quiet = True


def _progress(as_json: bool) -> bool:
    """Progress on stderr (``toollat.progress``: a bar in a terminal, plain lines elsewhere) unless
    the output is JSON or --quiet."""
    return not as_json and not console.quiet


def fail(message: str, code: int = 2) -> None:
    from rich.markup import escape

    # the message is text, not markup: "pip install 'toollat[serve]'" must keep its [serve]
    console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def _needs(extra: str, what: str) -> None:
    """One line naming the extra to install when a command's extra is missing (toollat/extras.py)."""
    from toollat.extras import MissingExtra, require

    try:
        require(extra, what)
    except MissingExtra as e:
        fail(str(e))


@app.command()
def ingest(
    paths: Annotated[list[Path] | None, typer.Argument(help="Log files or directories (any supported format, .gz ok).")] = None,
    out: Annotated[Path, typer.Option("--out", "-o", help="Parquet file to write.")] = Path("calls.parquet"),
    local: Annotated[bool, typer.Option("--local", help="Also read this user's own Claude Code and Codex logs.")] = False,
    no_redact: Annotated[bool, typer.Option("--no-redact", help="Keep home paths, e-mails and tokens in arguments.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON on stdout.")] = False,
    max_line_mb: Annotated[float, typer.Option("--max-line-mb", help="Skip (and count) log lines longer than this.")] = 16.0,
    dask: Annotated[str | None, typer.Option("--dask", help="Read the files on a Dask cluster: tcp://HOST:PORT, or local[:N] for N local worker processes. --out is then a directory (one Parquet file per source).")] = None,
) -> None:
    """Read agent logs into the canonical calls table (Parquet) and say what was read and skipped."""
    _needs("dask" if dask is not None else "data", "toollat ingest --dask" if dask is not None else "toollat ingest")
    from toollat.ingest import ingest as run_ingest, write_calls
    from toollat.ingest.local import find_local_logs, local_log_dirs

    if not max_line_mb > 0:
        fail("--max-line-mb must be positive")
    if dask is not None and (out.suffix == ".parquet" or out.is_file()):
        fail("with --dask, --out is a directory (the dataset: one Parquet file per source), e.g. --out calls/")
    inputs = list(paths or [])
    if local:
        found = find_local_logs()
        if not found:
            looked = "no local agent logs found; looked in: " + ", ".join(str(d) for d in local_log_dirs())
            if not inputs:  # nothing else to read: this is the whole story, said once
                fail(looked, 1)
            console.print(looked)
        inputs += found
    if not inputs:
        fail("give log files or directories, or --local")
    if dask is not None:
        result = _ingest_on_cluster(inputs, dask, redact=not no_redact, max_line_bytes=int(max_line_mb * 1024 * 1024))
    else:
        try:
            result = run_ingest(inputs, redact=not no_redact, progress=_progress(as_json),
                                max_line_bytes=int(max_line_mb * 1024 * 1024))
        except FileNotFoundError as e:
            fail(str(e))
    if result.table.num_rows == 0:
        result.report.render(console)
        fail("no tool calls found in the given paths", 1)
    if dask is not None:
        from toollat.ingest.cluster import write_dataset

        write_dataset(result.table, out)
    else:
        write_calls(result.table, out)
    result.report.out = str(out)
    if as_json:
        print(result.report.to_json())
    else:
        result.report.render(Console())


def _ingest_on_cluster(inputs: list[Path], address: str, redact: bool, max_line_bytes: int):
    """`ingest --dask`: the files read on the cluster's workers (toollat.ingest.cluster)."""
    from toollat.ingest import IngestResult
    from toollat.ingest.cluster import client_for, ingest_on_cluster

    try:
        client = client_for(address)
    except (OSError, TimeoutError, ValueError) as e:
        fail(f"cannot reach the Dask cluster {address!r}: {e}")
    try:
        with client:
            table, report = ingest_on_cluster(inputs, client, redact=redact, max_line_bytes=max_line_bytes)
            if client.cluster is not None and address.startswith("local"):
                client.cluster.close()
    except FileNotFoundError as e:
        fail(str(e))
    return IngestResult(table, report)


def _data(paths: list[Path], progress: bool):
    """Calls from raw logs, directories, TraceLab files or canonical Parquet tables."""
    from toollat.ingest import load_calls

    paths = [Path(p).expanduser() for p in paths]  # `--data=~/x` reaches us unexpanded
    missing = [p for p in paths if not p.exists()]
    if missing:  # a name without a suffix is meant as a directory (~/.claude/projects, logs/)
        fail("; ".join(f"no such {'file' if p.suffix else 'directory'}: {p}" for p in missing))
    try:
        df, report = load_calls(paths, progress=progress)
    except ValueError as e:  # a corrupt or foreign .parquet: say which file
        fail(str(e))
    if len(df) == 0:
        files = report.files if report is not None else []
        if not files:
            fail(f"no files in --data {' '.join(map(str, paths))}: nothing to read (an empty directory?)", 1)
        logs = sum(1 for f in files if f.format)
        fail(f"no tool calls found in --data: {len(files)} file{'s' * (len(files) != 1)}, {logs} of them agent logs "
             "in a format toollat reads, none with a tool call and its result", 1)
    return df


def _model(model: str):
    from toollat.bundle import BundleError
    from toollat.estimator import ToolLatencyModel
    from toollat.extras import MissingExtra

    try:
        return ToolLatencyModel.load(model)
    except (BundleError, MissingExtra) as e:
        fail(str(e))


def _unseen(model, df, exclude_seen: bool, quiet: bool = False):
    """Warn about (or drop, with --exclude-seen) calls of sessions the model trained on."""
    seen = model.seen_sessions(df)
    n = int(seen.sum())
    if n and exclude_seen:
        console.print(f"excluded {n:,} calls of {df.loc[seen, 'session_id'].nunique():,} sessions the model trained on")
        df = df[~seen].reset_index(drop=True)
        if len(df) == 0:
            fail("every call of --data is from a session the model trained on", 1)
    elif n:
        console.print(f"[yellow]warning:[/yellow] {n:,} of {len(df):,} calls ({df.loc[seen, 'session_id'].nunique():,} sessions) "
                      "are from sessions the model trained on: their scores are not held-out figures "
                      "(--exclude-seen drops them)")
    return df, n


@app.command()
def evaluate(
    model: Annotated[str, typer.Option("--model", "-m", help="Bundle directory, or a name under models/ (default).")] = "default",
    data: Annotated[list[Path] | None, typer.Option("--data", "-d", help="Logs, directories, TraceLab files or a canonical .parquet.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {n, models, per_family} as JSON.")] = False,
    exclude_seen: Annotated[bool, typer.Option("--exclude-seen", help="Drop calls of sessions the model trained on.")] = False,
    online: Annotated[bool, typer.Option("--online", help="Prequential: every call in time order, predicted before and observed after its result.")] = False,
) -> None:
    """Score a model and the baselines side by side on calls it never saw."""
    _needs("data", "toollat evaluate")
    from toollat.evaluation.evaluate import evaluate as run_evaluate
    from toollat.evaluation.prequential import evaluate_online
    from toollat.jsonio import dumps
    from toollat.training import metrics_table, print_whole

    if not data:
        fail("give --data PATH (logs, directories or a calls .parquet)")
    m = _model(model)
    df = _data(list(data), progress=_progress(as_json))
    df, n_seen = _unseen(m, df, exclude_seen)
    result = (evaluate_online if online else run_evaluate)(m, df, progress=_progress(as_json))
    result["seen_in_training"] = 0 if exclude_seen else n_seen
    if result["n"] == 0:
        fail(f"none of the calls is in the model's scope {result['scope']}", 1)
    if as_json:
        print(dumps(result))
    else:
        out = Console(soft_wrap=True)
        out.print(f"model {m.card_.get('name')} ({m.version_}); scope {result['scope']}")
        print_whole(metrics_table("unseen calls" if not n_seen or exclude_seen else "calls (some seen in training)", result), out)
        d = result["decision"]
        out.print(f"decision_cost: {d['unit']}; the oracle's {d['oracle_cost']:.3f}; decision_gap_closed against {d['fair_policy']}")


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
        call_args = e
    if not isinstance(call_args, dict):
        example = json.dumps({_main_arg(tool): args_json if isinstance(call_args, Exception) else "..."})
        why = f"not valid JSON ({call_args.msg} at column {call_args.colno})" if isinstance(call_args, Exception) else \
            f"a JSON {type(call_args).__name__}"
        fail(f"ARGS_JSON must be a JSON object of the tool's arguments, such as '{example}'; got {why}")
    p = Predictor(_model(model))
    pr = p.predict({"tool": tool, "args": call_args})
    if pr.fallback:
        _say_unknown_tool(p, tool, call_args, pr.fallback)
    if as_json:
        from toollat.jsonio import dumps

        print(dumps(pr.to_dict()))
        return
    q = "  ".join(f"{k} {_fmt_ms(v)}" for k, v in pr.quantiles.items())
    print(f"{tool}: p50 {_fmt_ms(pr.p50_ms)}, p90 {_fmt_ms(pr.p90_ms)}, P(>=60 s) {pr.p_long:.2f}")
    print(f"  quantiles: {q}")
    if pr.hint.action == "keep":
        print(f"  hint: keep (ttl {_fmt_ms(pr.hint.ttl_ms)}, then {pr.hint.then})")
    elif pr.hint.action == "offload":
        print(f"  hint: offload (host memory for {_fmt_ms(pr.hint.ttl_ms)})")
    else:
        print("  hint: drop")
    if pr.fallback:
        print(f"  note: tool not seen in training ({pr.fallback} fallback)")
    print(f"  model: {p.name} {p.model_version}")


def _main_arg(tool: str) -> str:
    """The argument that says what a tool does, for an example: a shell's command, a search's pattern, ..."""
    from toollat.core.families import tool_family

    return {"shell": "command", "search": "pattern", "read": "file_path", "edit": "file_path", "write": "file_path",
            "web": "url", "agent": "prompt", "human": "questions", "plan": "plan"}.get(tool_family(tool), "command")


def _say_unknown_tool(p, tool: str, call_args: dict, fallback: str) -> None:
    """A tool name the model never trained on, said on stderr, with a name it knows in another case.
    Names are matched exactly, as each harness names its tools in one casing (Claude Code ``Bash``,
    ``Grep``; Codex ``exec_command``, ``shell``: the shared corpus has no name in two casings), so
    ``bash`` is not ``Bash``: it gets its family's fallback, and this says so."""
    from rich.markup import escape

    from toollat.core.families import names_like

    known = [n for n in names_like(tool) if p.predict({"tool": n, "args": call_args}).fallback is None]
    what = "its family's" if fallback == "family" else "the global"
    msg = f"the model never saw a tool named {tool!r} in training: this is {what} fallback"
    if known:
        msg += f"; tool names are case-sensitive, as the agents' harnesses name them: did you mean {known[0]!r}?"
    console.print(f"[yellow]warning:[/yellow] {escape(msg)}")


@app.command()
def serve(
    model: Annotated[str, typer.Option("--model", "-m", help="Bundle directory, or a name under models/.")] = "default",
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback by default).")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port.")] = 8700,
    token: Annotated[str | None, typer.Option("--token", envvar="TOOLLAT_TOKEN", help="Require 'Authorization: Bearer TOKEN' on /v1 routes.")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Serving settings (memory budget, request limits); default: conf/serving/default.yaml.")] = None,
    memory_mb: Annotated[float | None, typer.Option("--memory-mb", help="Memory budget for everything clients grow (sessions, caches), MB [512].")] = None,
    max_sessions: Annotated[int | None, typer.Option("--max-sessions", help="Sessions kept in memory (least recently used evicted) [10000].")] = None,
    max_body_mb: Annotated[float | None, typer.Option("--max-body-mb", help="Largest request body accepted [16].")] = None,
    max_new_texts: Annotated[int | None, typer.Option("--max-new-texts", help="Never-seen call texts one request may carry (413 beyond) [256].")] = None,
    allow_host: Annotated[list[str] | None, typer.Option("--allow-host", help="Host name accepted besides loopback and --host (repeatable).")] = None,
) -> None:
    """Serve predictions over HTTP (OpenAPI at /docs)."""
    _needs("serve", "toollat serve")
    from dataclasses import replace

    from toollat.predictor import Predictor
    from toollat.serving import ServingConfig, serve as run_server

    if not 0 < port < 65536:
        fail("--port must be in 1..65535")
    if host not in ("127.0.0.1", "localhost", "::1") and token is None:
        console.print(f"[yellow]warning:[/yellow] serving on {host} without --token: anyone who can reach it can use it")
    try:  # the file's settings, then the flags given
        cfg = ServingConfig.load(config)
        memory = {k: v for k, v in (("budget_mb", memory_mb), ("max_sessions", max_sessions)) if v is not None}
        limits = {k: v for k, v in (("max_body_bytes", int(max_body_mb * 1024 * 1024) if max_body_mb is not None else None),
                                    ("max_new_texts", max_new_texts)) if v is not None}
        budget, limits = replace(cfg.memory, **memory), replace(cfg.limits, **limits)
    except (ValueError, TypeError, OSError) as e:
        fail(f"serving settings: {e}")
    predictor = Predictor(_model(model), memory=budget)
    predictor.predict({"tool": "Bash", "args": {"command": "true"}})  # the features' code paths before serving
    load_encoder = getattr(predictor.pipeline.embedder, "model", None)
    if load_encoder is not None:  # that text is usually cached on disk: load the encoder itself, not in a request
        load_encoder()
    predictor.reset()  # the warm-up is not counted
    console.print(f"toollat serving {predictor.name} ({predictor.model_version}) on http://{host}:{port} (docs at /docs), "
                  f"memory budget {f'{budget.budget_mb:g} MB' if budget.budget_mb is not None else 'none'}")
    run_server(predictor, host=host, port=port, token=token, limits=limits, allowed_hosts=tuple(allow_host or ()))


@app.command()
def simulate(
    model: Annotated[str, typer.Option("--model", "-m", help="Bundle directory, or a name under models/.")] = "default",
    data: Annotated[list[Path] | None, typer.Option("--data", "-d", help="Logs, directories, TraceLab files or a canonical .parquet.")] = None,
    policies: Annotated[str, typer.Option("--policies", help="Comma-separated: static, per_tool_median, per_tool, toollat, oracle.")] = "static,per_tool_median,per_tool,toollat,oracle",
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the hit-rate vs storage plot here (PNG; default: none).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the full result (headline, policies, curves) as JSON.")] = False,
    exclude_seen: Annotated[bool, typer.Option("--exclude-seen", help="Drop calls of sessions the model trained on.")] = False,
) -> None:
    """Replay the data's tool and human gaps under KV-cache policies: what the predictions are worth."""
    _needs("data", "toollat simulate")
    from toollat.predictor import Predictor
    from toollat.simulation.replay import simulate_bundle

    if not data:
        fail("give --data PATH (logs, directories or a calls .parquet)")
    names = [p.strip() for p in policies.split(",") if p.strip()]
    df = _data(list(data), progress=_progress(as_json))
    predictor = Predictor(_model(model))
    df, _ = _unseen(predictor.model, df, exclude_seen)
    try:
        result = simulate_bundle(predictor, df, names, progress=_progress(as_json), plot_path=plot)
    except ValueError as e:
        fail(str(e))
    if as_json:
        from toollat.jsonio import dumps

        print(dumps(result.to_dict()))
        return
    out = Console(width=max(Console().width, 120))
    d = result.data
    out.print(f"{d.get('tool_gaps', 0):,} tool gaps and {d.get('human_gaps', 0):,} human gaps in {d.get('sessions', 0):,} sessions; "
              f"costs: re-prefill = {result.costs.breakeven_s:g} s of GPU hold, offload {result.costs.offload_cost_s:g} s, "
              f"host memory x{result.costs.offload_hold_ratio:g}")
    table = result.table()
    from rich.table import Table

    t = Table(show_edge=False)
    for col in ("policy", "hit_rate", "storage_ratio", "equiv_storage_ratio", "cost_ratio", "prefill_amplification", "offload_share", "drop_share"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, row in table.iterrows():
        t.add_row(name, *(f"{row[c]:.3f}" for c in ("hit_rate", "storage_ratio", "equiv_storage_ratio", "cost_ratio",
                                                       "prefill_amplification", "offload_share", "drop_share")))
    out.print(t)
    h = result.headline
    out.print("[bold]headline[/bold] (* = best static TTL): " + ", ".join(
        f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}" for k, v in h.items()
        if k in ("best_static_ttl_s", "hit_rate_static", "hit_rate_toollat", "hit_rate_oracle",
                 "gap_closed_at_equal_storage", "storage_ratio_at_equal_hit_rate", "decision_gap_closed")))
    if plot is not None:
        out.print(f"plot: {plot}")


@app.command()
def replay(
    model: Annotated[str, typer.Option("--model", "-m", help="Bundle directory, or a name under models/.")] = "default",
    data: Annotated[list[Path] | None, typer.Option("--data", "-d", help="Logs, directories, TraceLab files or a canonical .parquet.")] = None,
    pool_tokens: Annotated[list[int] | None, typer.Option("--pool-tokens", help="GPU KV pool size in tokens (repeatable; default: live KV / each of conf/pool live_over_pool).")] = None,
    host_ratio: Annotated[float | None, typer.Option("--host-ratio", help="Host tier as a multiple of each GPU pool (0: none; default: conf/pool host_ratio).")] = None,
    host_tokens: Annotated[int | None, typer.Option("--host-tokens", help="One host tier in tokens for every pool (instead of --host-ratio).")] = None,
    concurrency: Annotated[int | None, typer.Option("--concurrency", help="Sessions live at once (sessions are shifted in time onto this many lanes; default: conf/pool).")] = None,
    order_seed: Annotated[int | None, typer.Option("--order-seed", help="Pack sessions in a random order drawn with this seed (default: by first event).")] = None,
    kv_bytes_per_token: Annotated[float | None, typer.Option("--kv-bytes-per-token", help="KV cache bytes per token (default: conf/pool resume).")] = None,
    host_gb_s: Annotated[float | None, typer.Option("--host-gb-s", help="Host <-> GPU bandwidth, GB/s one way (default: conf/pool resume).")] = None,
    prefill_tokens_per_s: Annotated[float | None, typer.Option("--prefill-tokens-per-s", help="Re-prefill throughput, tokens/s (default: conf/pool resume).")] = None,
    config: Annotated[Path | None, typer.Option("--config", help="Pool settings file (default: the checkout's conf/pool/default.yaml).")] = None,
    plot: Annotated[Path | None, typer.Option("--plot", help="Write the hit-rate and resume-stall vs pool-size plot here (PNG).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print {headline, policies, data, pools, host_tokens} as JSON.")] = False,
    exclude_seen: Annotated[bool, typer.Option("--exclude-seen", help="Drop calls of sessions the model trained on.")] = False,
) -> None:
    """Replay many sessions at once against a shared GPU KV pool and a host tier: hit rates and the resume stall per policy and pool size."""
    _needs("data", "toollat replay")
    from toollat.predictor import Predictor
    from toollat.simulation.pool import plot_pools, replay_bundle
    from toollat.simulation.replay import _log_to_active_mlflow_run
    from toollat.simulation.resume import PoolConfig

    if not data:
        fail("give --data PATH (logs, directories or a calls .parquet)")
    if any(n <= 0 for n in pool_tokens or []):
        fail("--pool-tokens must be > 0")
    if host_tokens is not None and host_tokens < 0:
        fail("--host-tokens must be >= 0")
    if host_tokens is not None and host_ratio is not None:
        fail("give --host-ratio or --host-tokens, not both")
    try:
        cfg = PoolConfig.load(config).with_overrides(
            concurrency=concurrency, host_ratio=host_ratio, kv_bytes_per_token=kv_bytes_per_token,
            host_gb_s=host_gb_s, prefill_tokens_per_s=prefill_tokens_per_s)
    except (ValueError, TypeError, OSError) as e:
        fail(str(e))
    df = _data(list(data), progress=not as_json and sys.stderr.isatty())
    predictor = Predictor(_model(model))
    df, _ = _unseen(predictor.model, df, exclude_seen)
    try:
        result = replay_bundle(predictor, df, cfg, pool_tokens, host_tokens, order_seed,
                               progress=not as_json and sys.stderr.isatty())
    except ValueError as e:
        fail(str(e))
    if plot is not None:
        plot_pools(result, plot)
        _log_to_active_mlflow_run(plot)
    if as_json:
        from toollat.jsonio import dumps

        print(dumps(result.to_dict()))
        return
    out = Console(width=max(Console().width, 120))
    d = result.data
    r = cfg.resume
    out.print(f"{d.get('pauses', 0):,} pauses of {d.get('sessions', 0):,} sessions at concurrency {cfg.concurrency}; "
              f"live KV {d.get('live_kv_tokens', 0):,.0f} tokens (peak {d.get('peak_demand_tokens', 0):,.0f}); "
              f"host tier {d.get('host_tier')}; resume: {r.host_tokens_per_s:,.0f} tokens/s loaded, "
              f"{r.prefill_tokens_per_s:,.0f} tokens/s re-prefilled ({r.gpu}, {r.model})")
    for note in d.get("notes", []):
        out.print(f"note: {note}")
    from rich.table import Table

    t = Table(show_edge=False, title="GPU hit rate / GPU+host hit rate / mean resume stall (ms), by GPU pool (tokens)")
    t.add_column("policy")
    for n in result.pools:
        t.add_column(f"{n:,}", justify="right")
    def cell(x: dict) -> str:
        rate = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        stall = "-" if x["stall_mean_s"] is None else f"{1000 * x['stall_mean_s']:.2f}"
        return f"{rate(x['hit_rate'])} / {rate(x['gpu_host_hit_rate'])} / {stall}"

    for name, rows in result.policies.items():
        t.add_row(name, *(cell(x) for x in rows))
    out.print(t)
    h = result.headline
    fmt = lambda x: "n/a" if x is None else f"{x:.3f}"  # noqa: E731
    if "stall_gap_closed" in h:
        out.print(f"[bold]stall gap closed[/bold] (lru+host -> oracle, middle pool {h['middle_pool']:,}): "
                  f"toollat {fmt(h['stall_gap_closed'])}, per_tool {fmt(h.get('stall_gap_closed_per_tool'))}")
    out.print(f"[bold]gap closed vs LRU[/bold] (GPU hit rate): toollat {fmt(h.get('gap_closed_vs_lru'))}, "
              f"per_tool {fmt(h.get('gap_closed_vs_lru_per_tool'))} (n/a: Belady never beats LRU by 0.02)")
    if plot is not None:
        out.print(f"plot: {plot}")


@app.command()
def harvest(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the harvested Claude Code session logs.")] = Path("harvest"),
    budget_s: Annotated[float, typer.Option("--budget-s", help="Time budget in seconds.")] = 120.0,
    seed: Annotated[int, typer.Option("--seed", help="Seed for the scripted sessions.")] = 0,
    call_timeout_s: Annotated[float, typer.Option("--call-timeout-s", help="Timeout per call.")] = 30.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """Measure real tool-call latencies on this machine: scripted agent sessions in a scratch workspace."""
    from toollat.harvest import run_harvest

    if budget_s <= 0 or call_timeout_s <= 0:
        fail("--budget-s and --call-timeout-s must be positive")
    report = run_harvest(out, budget_s=budget_s, seed=seed, progress=_progress(as_json),
                         call_timeout_s=call_timeout_s)
    if as_json:
        from toollat.jsonio import dumps

        print(dumps(report.to_dict()))
        return
    print(f"harvested {report.calls} calls in {report.sessions} sessions in {report.seconds:.0f} s "
          f"({report.timeouts} timeouts, {report.refused} refused); latency {_fmt_ms(report.min_ms)} to {_fmt_ms(report.max_ms)}")
    print(f"wrote {len(report.files)} Claude Code session logs to {out}; read them with `toollat ingest {out}`")


def _fmt_ms(ms: float) -> str:
    if ms < 10:
        return f"{ms:.2f} ms"
    if ms < 1000:
        return f"{ms:.0f} ms"
    if ms < 120_000:
        return f"{ms / 1000:.1f} s"
    return f"{ms / 60_000:.1f} min"


if __name__ == "__main__":
    app()
