"""What the tail is made of (README.md, "What the tail is made of"): the calls of 30 s or more in
the shared corpus, by tool, permission mode, program, wait before execution vs execution,
subagents, human questions, background jobs and polls. Prints markdown tables; reads the table
``run.py`` caches (or ingests the corpus). About a minute.

Program classes are read off the command line's programs (every segment of ``&&``, ``;``, ``|``):
``build/test`` if any is a compiler, test runner, linter or package manager run, ``network`` if
any talks to a remote (``gh``, ``git push/fetch/pull/clone``, ``curl``), ``wait`` for ``sleep`` /
``wait``, else ``quick`` (file, git-local and text programs that run in milliseconds).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import HERE, corpus_calls  # noqa: E402

from toollat.features.text import shell_command  # noqa: E402

TAIL_MS, LONG_MS = 30_000.0, 60_000.0
BUILD = re.compile(r"^(go (test|build|run|vet|generate|mod)|cargo|npm|npx|pnpm|yarn|bun|node|deno|make|mise run|mise|"
                   r"pytest|python|python3|uv|pip|tsc|eslint|biome|golangci-lint|gofmt|go fmt|dotnet|mvn|gradle|"
                   r"docker|task|just|jest|vitest|playwright|\./|bash \S+\.sh|sh \S+\.sh)")
NETWORK = re.compile(r"^(gh |git (push|fetch|pull|clone|ls-remote)|curl|wget|ssh|scp)")
WAIT = re.compile(r"^(sleep|wait|timeout \d+ ?(sleep|wait))")
SEGMENT = re.compile(r"\s*(?:&&|\|\||;|\||\n)\s*")
ENV = re.compile(r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)+")


def program_class(tool: str, args: str | None) -> str:
    try:
        cmd = shell_command(tool, json.loads(args)) if args else None
    except (ValueError, TypeError):
        cmd = None
    if not cmd:
        return "n/a"
    segs = [ENV.sub("", s.strip()) for s in SEGMENT.split(cmd) if s.strip() and not s.strip().startswith("#")]
    segs = [re.sub(r"^cd \S+$", "", s) for s in segs]
    segs = [s for s in segs if s]
    if any(WAIT.match(s) for s in segs):
        return "wait"
    if any(BUILD.match(s) for s in segs):
        return "build/test"
    if any(NETWORK.match(s) for s in segs):
        return "network"
    return "quick"


def table(df: pd.DataFrame, cols: list[str], title: str) -> None:
    print(f"\n{title}\n")
    print("| " + " | ".join(df.index.names if df.index.nlevels > 1 else [df.index.name or ""]) + " | " + " | ".join(cols) + " |")
    print("|" + "---|" * (df.index.nlevels + len(cols)))
    for idx, row in df[cols].iterrows():
        idx = idx if isinstance(idx, tuple) else (idx,)
        cells = [f"{v:,.0f}" if isinstance(v, (int, np.integer)) or (isinstance(v, float) and v == v and (v >= 100 or v == int(v)))
                 else (f"{v:.2f}" if isinstance(v, float) else str(v)) for v in row]
        print("| " + " | ".join(map(str, idx)) + " | " + " | ".join(cells) + " |")


def summary(g: pd.DataFrame, tail: pd.DataFrame) -> pd.Series:
    return pd.Series({"calls": len(g), "share of tail calls": len(g) / len(tail),
                      "share of tail time": g.wall_ms.sum() / tail.wall_ms.sum(),
                      "median s": g.wall_ms.median() / 1000, "p90 s": g.wall_ms.quantile(0.9) / 1000})


def main() -> None:
    df = corpus_calls(HERE / ".cache")
    n, total = len(df), df.wall_ms.sum()
    tail = df[df.wall_ms >= TAIL_MS].copy()
    print(f"{n:,} calls; of 30 s or more: {len(tail):,} ({len(tail) / n:.1%} of calls, {tail.wall_ms.sum() / total:.1%} "
          f"of tool time); of 60 s or more: {(df.wall_ms >= LONG_MS).sum():,} "
          f"({(df.wall_ms >= LONG_MS).mean():.1%}, {df.wall_ms[df.wall_ms >= LONG_MS].sum() / total:.1%})")

    tail["tool"] = tail.agent.str.replace("claude_code", "cc").str.replace("codex", "cx") + ":" + tail.tool_name
    by_tool = tail.groupby("tool").apply(summary, tail=tail, include_groups=False).sort_values("share of tail time", ascending=False)
    table(by_tool.head(14), list(by_tool.columns), "By tool (cc = Claude Code, cx = Codex), calls of 30 s or more:")

    cc = tail[tail.agent == "claude_code"].copy()
    cc["mode"] = cc.permission_mode.fillna("(not logged)")
    for tools, name in ((["Bash"], "Bash"), (["Edit", "Write", "MultiEdit"], "Edit/Write")):
        sub = cc[cc.tool_name.isin(tools)]
        t = sub.groupby("mode").apply(summary, tail=tail, include_groups=False).sort_values("calls", ascending=False)
        table(t, list(t.columns), f"Claude Code {name} of 30 s or more, by permission mode in force:")
    allcc = df[df.agent == "claude_code"]
    ew = allcc[allcc.tool_name.isin(["Edit", "Write", "MultiEdit"])]
    share = ew.groupby(ew.permission_mode.fillna("(not logged)")).agg(
        calls=("wall_ms", "size"), over_30s=("wall_ms", lambda w: (w >= TAIL_MS).mean()),
        median_s=("wall_ms", lambda w: w.median() / 1000))
    table(share, list(share.columns), "All Claude Code Edit/Write calls by mode: share that took 30 s or more:")

    bash = allcc[allcc.tool_name == "Bash"].copy()
    bash["program"] = [program_class(t, a) for t, a in zip(bash.tool_name, bash.args)]
    bash["mode"] = bash.permission_mode.fillna("(not logged)")
    bash["is_tail"] = bash.wall_ms >= TAIL_MS
    t = bash.groupby("program").agg(calls=("wall_ms", "size"), tail_calls=("is_tail", "sum"),
                                    tail_share=("is_tail", "mean"), median_s=("wall_ms", lambda w: w.median() / 1000))
    table(t, list(t.columns), "Claude Code Bash by program class (all calls; tail = 30 s or more):")
    t = bash[bash.is_tail].groupby(["program", "mode"]).size().unstack(fill_value=0)
    table(t, list(t.columns), "Claude Code Bash of 30 s or more: program class x permission mode (calls):")

    known = bash[bash.exec_started_at.notna() & bash.is_tail].copy()
    known["wait_s"] = (known.exec_started_at - known.emitted_at).dt.total_seconds()
    known["exec_s"] = (known.result_at - known.exec_started_at).dt.total_seconds()
    t = known.groupby("program").agg(calls=("wall_ms", "size"), median_wait_s=("wait_s", "median"),
                                     median_exec_s=("exec_s", "median"),
                                     wait_over_half=("wait_s", lambda w: (w > known.loc[w.index, "exec_s"]).mean()))
    table(t, list(t.columns), "Claude Code Bash of 30 s or more with an execution start (versions 2.1.12 .. 2.1.63): "
          "wait before execution vs execution:")
    writing = bash[bash.is_tail & (bash.emitted_at >= known.emitted_at.min()) & (bash.emitted_at <= known.emitted_at.max())]
    no_rec = writing[writing.exec_started_at.isna()]
    print(f"\nIn the same time window, {len(no_rec)} of {len(writing)} Bash calls of 30 s or more have no execution "
          f"start (their command ran under ~2 s): program classes {no_rec.program.value_counts().to_dict()}, "
          f"modes {no_rec['mode'].value_counts().to_dict()}")

    sub = allcc[allcc.tool_name.isin(["Task", "Agent"])].copy()
    sub["type"] = [json.loads(a).get("subagent_type", "?") if a else "?" for a in sub.args]
    sub["prompt_chars"] = [len(json.loads(a).get("prompt", "")) if a else 0 for a in sub.args]
    sub["bg"] = [bool(json.loads(a).get("run_in_background")) if a else False for a in sub.args]
    t = sub.groupby("type").agg(calls=("wall_ms", "size"), median_s=("wall_ms", lambda w: w.median() / 1000),
                                p90_s=("wall_ms", lambda w: w.quantile(0.9) / 1000),
                                runner_over_wall=("internal_ms", lambda x: (x / sub.loc[x.index, "wall_ms"]).median()),
                                background=("bg", "sum")).sort_values("calls", ascending=False)
    table(t.head(8), list(t.columns), "Subagent calls (Task/Agent), all: wall time, runner-reported share of it:")
    fg = sub[~sub.bg]
    r = np.corrcoef(np.log10(fg.prompt_chars.clip(lower=1)), np.log10(fg.wall_ms.clip(lower=10)))[0, 1]
    print(f"\nSubagent prompt length vs wall time (foreground calls): Pearson r of the logs {r:.2f} over {len(fg)} calls; "
          f"background subagent calls return in a median {sub.wall_ms[sub.bg].median() / 1000:.1f} s")

    human = allcc[allcc.tool_name.isin(["AskUserQuestion", "ExitPlanMode", "EnterPlanMode"])]
    t = human.groupby("tool_name").agg(calls=("wall_ms", "size"), median_s=("wall_ms", lambda w: w.median() / 1000),
                                       over_30s=("wall_ms", lambda w: (w >= TAIL_MS).mean()))
    table(t, list(t.columns), "Questions to the human:")

    bg = allcc[allcc.tool_name == "Bash"]
    bg_flag = np.array([bool(json.loads(a).get("run_in_background")) if a else False for a in bg.args])
    polls = allcc[allcc.tool_name.isin(["TaskOutput", "BashOutput", "KillShell", "TaskStop"])]
    cx = df[df.agent == "codex"]
    stdin = cx[cx.tool_name == "write_stdin"]
    print(f"\nBackground and polls: Claude Code Bash with run_in_background: {bg_flag.sum()} calls, median "
          f"{bg.wall_ms[bg_flag].median() / 1000:.2f} s; polls of them ({', '.join(sorted(set(polls.tool_name)))}): "
          f"{len(polls)} calls, median {polls.wall_ms.median() / 1000:.1f} s, {(polls.wall_ms >= TAIL_MS).sum()} of 30 s or more. "
          f"Codex write_stdin: {len(stdin)} calls, median {stdin.wall_ms.median() / 1000:.1f} s, "
          f"{(stdin.wall_ms >= TAIL_MS).sum()} of 30 s or more ({stdin.wall_ms[stdin.wall_ms >= TAIL_MS].sum() / tail.wall_ms.sum():.1%} of tail time); "
          f"Codex exec_command of 30 s or more: {((cx.tool_name == 'exec_command') & (cx.wall_ms >= TAIL_MS)).sum()}, "
          f"approval modes {cx.permission_mode.value_counts().to_dict()}")


if __name__ == "__main__":
    main()
