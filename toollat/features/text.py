"""The text of a call: what it runs or touches, as one string.

``primary(tool, args)`` picks the argument that says what the call does (a shell command, a
path, a pattern, a query, a prompt). What counts as "the same" call is said here, once per
use: ``exact_key`` (the same call, for the session history), ``command_key`` (the same
command, for the per-command baseline); the feature cache keys the whole call
(``FeaturePipeline.static_key``). ``embed_text`` is the normalized form given to the sentence
embedding: long absolute paths are cut to their last two parts and ids/hex runs are masked, so
the same command in another project, machine or session reads the same.
"""
from __future__ import annotations

import json
import re
from typing import Any

from toollat.core.hashing import code


SHELL_TOOLS = frozenset({
    "bash", "powershell", "exec_command", "shell", "local_shell", "container.exec", "shell_command",
})
_JS_CMD = re.compile(r"""cmd\s*:\s*(["'`])((?:\\.|(?!\1).)*)\1""", re.S)
_PATH = re.compile(r"(?:[A-Za-z]:)?(?:[\\/][\w.@+~-]+){3,}[\\/]?")
_ID = re.compile(r"\b(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|[0-9a-f]{12,}|[0-9]{6,})\b", re.I)
_SPACE = re.compile(r"\s+")
MAX_TEXT = 300


def _s(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, list):
        return " ".join(_s(x) for x in v)
    return json.dumps(v, ensure_ascii=False, separators=(",", ":"))


def shell_command(tool: str, args: dict[str, Any] | None) -> str | None:
    """The shell command line a call runs, if it runs one (including Codex code-mode scripts)."""
    if not args:
        return None
    t = tool.lower()
    if t in SHELL_TOOLS:
        if "command" in args:
            return _s(args["command"])
        if "cmd" in args:
            return _s(args["cmd"])
        action = args.get("command") or args.get("action")
        return _s(action) if action else None
    if t == "exec":  # Codex code mode: JS that calls tools.exec_command({cmd: "..."})
        m = _JS_CMD.search(_s(args.get("input")))
        return m.group(2) if m else None
    return None


def primary(tool: str, args: dict[str, Any] | None) -> str:
    """The argument that says what the call does."""
    if not args:
        return ""
    cmd = shell_command(tool, args)
    if cmd is not None:
        return cmd
    t = tool.lower()
    if t == "write_stdin":
        return f"poll chars={len(_s(args.get('chars')))} yield_ms={args.get('yield_time_ms', '')}"
    for key in ("file_path", "notebook_path", "path", "pattern", "query", "url", "command", "cmd", "prompt",
                "description", "skill", "input", "message", "questions", "plan", "todos", "subject"):
        if key in args:
            text = _s(args[key])
            if key in ("pattern",) and "path" in args:
                text += " in " + _s(args["path"])
            return text
    return _s(args)


def exact_key(tool: str, args: dict[str, Any] | None) -> str:
    """Identity of 'the same call' (tool + its primary argument, whitespace-folded): what the
    session history keeps statistics of (its ``cmd`` key)."""
    return tool + "\x1f" + _SPACE.sub(" ", primary(tool, args)).strip()[:2000]


def command_key(tool: str, args: dict[str, Any] | str | None) -> int:
    """Hash of 'the same command' as the ``per_command_mean`` baseline counts it (Continuum's
    rule): the first shell word of a shell call, else the tool. ``args`` parsed or JSON text."""
    if isinstance(args, str):
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            args = None
    cmd = shell_command(tool, args) if isinstance(args, dict) else None
    if cmd and cmd.split():
        return code("cmd\x1f" + tool + "\x1f" + cmd.split()[0])
    return code("tool\x1f" + tool)


def _short_path(m: re.Match) -> str:
    parts = re.split(r"[\\/]", m.group(0).rstrip("/\\"))
    return "…/" + "/".join(parts[-2:])


def embed_text(tool: str, args: dict[str, Any] | None) -> str:
    """Normalized text for the sentence embedding."""
    body = primary(tool, args)
    body = _PATH.sub(_short_path, body)
    body = _ID.sub("<id>", body)
    body = _SPACE.sub(" ", body).strip()
    return f"{tool}: {body}"[:MAX_TEXT]
