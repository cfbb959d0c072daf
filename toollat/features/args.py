"""Features parsed from a call's arguments (docs/ARCHITECTURE.md, "Features").

Shell commands: program, subcommand, pipelines, ``&&`` chains, ``cd`` prefixes, explicit
timeouts and sleeps, background flags, coarse categories (test, build, network, ...), and the
Codex yield window. Reads/greps/globs: path depth, extension, pattern shape, limits. Edits and
writes: sizes. Subagents, questions to the human, web and MCP calls: their size and kind.

``arg_features(tool, family, args)`` returns numeric features (``NUMERIC``, NaN where they do
not apply) and categorical strings (``CATEGORICAL``), which the pipeline maps to small integer
codes through a vocabulary of hashes, so no argument text reaches a bundle.
"""
from __future__ import annotations

import math
import re
from typing import Any

from . import shell
from .text import shell_command

NAN = float("nan")
SHELL_CATEGORIES = tuple(shell.CATEGORIES)

NUMERIC: tuple[str, ...] = (
    "a_has_args", "a_json_chars", "a_n_keys", "a_primary_chars",
    # shell
    "sh_is_shell", "sh_segments", "sh_pipes", "sh_and", "sh_semicolons", "sh_words", "sh_flags",
    "sh_cd_prefix", "sh_background", "sh_timeout_s", "sh_sleep_s", "sh_redirect", "sh_loop", "sh_heredoc",
    *(f"sh_cat_{c}" for c in SHELL_CATEGORIES),
    # explicit waits the agent asked for
    "a_timeout_s", "a_yield_s", "a_max_output", "a_run_in_background", "a_stdin_chars",
    # files and patterns
    "f_path_depth", "f_offset", "f_limit", "f_is_media", "p_pattern_chars", "p_regex_chars",
    "p_recursive_glob", "p_context_lines", "p_head_limit", "p_output_mode", "p_case_insensitive", "p_multiline",
    # edits and writes
    "e_old_chars", "e_new_chars", "e_replace_all", "e_n_edits", "e_patch_files", "e_patch_hunks", "w_content_chars",
    # agents, humans, web, plans
    "g_prompt_chars", "h_questions", "h_options", "w_query_chars", "pl_items",
)
CATEGORICAL: tuple[str, ...] = ("c_program", "c_subcommand", "c_ext", "c_kind")
# The call's class (``context.CLASSES``), in the categorical strings under "cls" (the pipeline
# keys the session history by it; it is no column of its own): a poll of a background job, a
# background launch, a subagent, an edit, a shell command of millisecond programs only
# ("quick": what waits there is an approval prompt) or any other shell command.
CLASS = "cls"
QUICK_PROGRAMS = frozenset((
    "git ls cat grep rg sed awk head tail wc find echo pwd mkdir rm mv cp touch chmod jq sort uniq cut tr diff stat "
    "file which basename dirname realpath readlink date printf test [ true cd export ln tree du xargs tee less more "
    "column env fd ag rmdir").split())
SLOW_CATEGORIES = frozenset(("network", "build", "test", "lint", "wait", "script"))
POLL_TOOLS = frozenset(("taskoutput", "bashoutput", "write_stdin"))

_MEDIA = {".png", ".jpg", ".jpeg", ".gif", ".pdf", ".webp", ".ipynb", ".svg", ".bmp"}
_REGEX = re.compile(r"[\\^$.|?*+()\[\]{}]")


def _len(v: Any) -> float:
    if v is None:
        return NAN
    if isinstance(v, str):
        return float(len(v))
    if isinstance(v, (list, dict)):
        return float(len(str(v)))
    return NAN


def _num(v: Any) -> float:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, (int, float)) and math.isfinite(v):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v)
        except ValueError:
            return NAN
    return NAN


def _log(v: float) -> float:
    return math.log10(1.0 + v) if v == v and v >= 0 else NAN


def _path_info(p: Any) -> tuple[float, str]:
    if not isinstance(p, str) or not p:
        return NAN, ""
    parts = [x for x in re.split(r"[\\/]", p) if x]
    name = parts[-1] if parts else ""
    ext = name[name.rfind("."):].lower() if "." in name[1:] else ""
    return float(len(parts)), ext[:12]


def arg_features(tool: str, family: str, args: dict[str, Any] | None) -> tuple[dict[str, float], dict[str, str]]:
    num: dict[str, float] = {}
    cat: dict[str, str] = {}
    if args is None:
        num["a_has_args"] = 0.0
        return num, cat
    num["a_has_args"] = 1.0
    num["a_n_keys"] = float(len(args))
    num["a_json_chars"] = _log(float(len(str(args))))
    t = tool.lower()

    cmd = shell_command(tool, args)
    if cmd is not None:
        sc = shell.parse(cmd)
        num.update({
            "sh_is_shell": 1.0, "sh_segments": sc.n_segments, "sh_pipes": sc.n_pipes, "sh_and": sc.n_and,
            "sh_semicolons": sc.n_semicolons, "sh_words": sc.n_words, "sh_flags": sc.n_flags,
            "sh_cd_prefix": float(sc.cd_prefix), "sh_background": float(sc.background),
            "sh_timeout_s": sc.timeout_s if sc.timeout_s is not None else NAN, "sh_sleep_s": sc.sleep_s,
            "sh_redirect": float(sc.has_redirect), "sh_loop": float(sc.has_loop), "sh_heredoc": float(sc.has_heredoc),
            "a_primary_chars": _log(float(len(cmd))),
        })
        for c in SHELL_CATEGORIES:
            num[f"sh_cat_{c}"] = float(c in sc.categories)
        cat["c_program"] = sc.program
        cat["c_subcommand"] = sc.subcommand or sc.program
        quick = (sc.programs and not sc.sleep_s and all(p in QUICK_PROGRAMS for p in sc.programs)
                 and not sc.categories & SLOW_CATEGORIES)
        cat[CLASS] = "bg" if sc.background else ("quick" if quick else "shell")

    # explicit time budgets: Claude Bash timeout (ms), Codex yield_time_ms / timeout_ms, wait_agent timeout_ms
    timeout = _num(args.get("timeout"))
    if timeout == timeout and t in ("bash", "powershell", "taskoutput", "monitor"):
        timeout /= 1000.0
    for key in ("timeout_ms", "timeout_in_ms"):
        if key in args:
            timeout = _num(args[key]) / 1000.0
    if "timeout_sec" in args or "timeout_seconds" in args:
        timeout = _num(args.get("timeout_sec", args.get("timeout_seconds")))
    num["a_timeout_s"] = timeout
    if "yield_time_ms" in args:
        num["a_yield_s"] = _num(args["yield_time_ms"]) / 1000.0
    if "max_output_tokens" in args or "max_tokens" in args:
        num["a_max_output"] = _log(_num(args.get("max_output_tokens", args.get("max_tokens"))))
    if "run_in_background" in args:
        num["a_run_in_background"] = float(args.get("run_in_background") is True)
    if t == "write_stdin":
        num["a_stdin_chars"] = _len(args.get("chars"))
    if "block" in args:  # TaskOutput(block=true) waits for the task
        num["a_run_in_background"] = 0.0 if args.get("block") else 1.0

    path = args.get("file_path") or args.get("notebook_path") or args.get("path")
    depth, ext = _path_info(path)
    num["f_path_depth"] = depth
    if ext:
        cat["c_ext"] = ext
        num["f_is_media"] = float(ext in _MEDIA)
    if "offset" in args:
        num["f_offset"] = _log(_num(args["offset"]))
    if "limit" in args:
        num["f_limit"] = _log(_num(args["limit"]))

    pattern = args.get("pattern") if isinstance(args.get("pattern"), str) else None
    if pattern is not None:
        num["p_pattern_chars"] = float(len(pattern))
        num["p_regex_chars"] = float(len(_REGEX.findall(pattern)))
        num["p_recursive_glob"] = float(pattern.count("**") + (1 if isinstance(args.get("glob"), str) and "**" in args["glob"] else 0))
    if family == "search":
        ctxl = max((_num(args.get(k)) for k in ("-A", "-B", "-C", "context") if k in args), default=NAN)
        num["p_context_lines"] = ctxl
        num["p_head_limit"] = _log(_num(args.get("head_limit")))
        mode = args.get("output_mode")
        num["p_output_mode"] = {"files_with_matches": 0.0, "content": 1.0, "count": 2.0}.get(mode, NAN) if isinstance(mode, str) else NAN
        num["p_case_insensitive"] = float(args.get("-i") is True)
        num["p_multiline"] = float(args.get("multiline") is True)

    if family in ("edit", "write"):
        num["e_old_chars"] = _log(_len(args.get("old_string")))
        num["e_new_chars"] = _log(_len(args.get("new_string")))
        num["e_replace_all"] = float(args.get("replace_all") is True)
        if isinstance(args.get("edits"), list):
            num["e_n_edits"] = float(len(args["edits"]))
        patch = args.get("input") if t == "apply_patch" else None
        if isinstance(patch, str):
            num["e_patch_files"] = float(len(re.findall(r"^\*\*\* (?:Update|Add|Delete) File", patch, re.M)))
            num["e_patch_hunks"] = float(patch.count("\n@@"))
            num["w_content_chars"] = _log(float(len(patch)))
        if "content" in args:
            num["w_content_chars"] = _log(_len(args.get("content")))

    if family == "agent":
        num["g_prompt_chars"] = _log(_len(args.get("prompt") or args.get("message")))
        kind = args.get("subagent_type") or args.get("agent_type")
        if isinstance(kind, str):
            cat["c_kind"] = kind[:40]
    if family == "human":
        qs = args.get("questions")
        if isinstance(qs, list):
            num["h_questions"] = float(len(qs))
            num["h_options"] = float(sum(len(q.get("options") or []) for q in qs if isinstance(q, dict)))
    if family == "web":
        num["w_query_chars"] = _len(args.get("query") or args.get("prompt"))
        url = args.get("url")
        if isinstance(url, str):
            m = re.match(r"^[a-z]+://([^/]+)", url)
            if m:
                cat["c_kind"] = m.group(1)[-40:]
    if family == "plan":
        items = args.get("todos") or args.get("plan")
        num["pl_items"] = float(len(items)) if isinstance(items, list) else NAN
        if t in ("taskupdate", "taskcreate"):
            status = args.get("status")
            if isinstance(status, str):
                cat["c_kind"] = status[:20]
    if family == "mcp":
        parts = tool.split("__")
        cat["c_kind"] = parts[1] if len(parts) > 2 else tool
    if t == "skill":
        skill = args.get("skill")
        if isinstance(skill, str):
            cat["c_kind"] = skill[:40]
    if t in POLL_TOOLS:
        cat[CLASS] = "poll"
    elif args.get("run_in_background") is True:
        cat[CLASS] = "bg"
    elif family == "agent":
        cat[CLASS] = "agent"
    elif family in ("edit", "write"):
        cat[CLASS] = "edit"
    return num, cat
