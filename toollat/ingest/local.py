"""Where the user's own agent logs live on this machine.

Claude Code writes ``$CLAUDE_CONFIG_DIR/projects`` (default ``~/.claude/projects``); Codex writes
``$CODEX_HOME/sessions`` (default ``~/.codex/sessions``). ``HOME`` is read from the environment
at call time, so tests and ``make train`` on an empty ``$HOME`` see what a new user sees.
"""
from __future__ import annotations

import os
from pathlib import Path


def _home() -> Path:
    return Path(os.environ.get("HOME") or Path.home())


def local_log_dirs() -> list[Path]:
    """Candidate log folders, whether or not they exist."""
    claude = Path(os.environ["CLAUDE_CONFIG_DIR"]).expanduser() if os.environ.get("CLAUDE_CONFIG_DIR") else _home() / ".claude"
    codex = Path(os.environ["CODEX_HOME"]).expanduser() if os.environ.get("CODEX_HOME") else _home() / ".codex"
    return [claude / "projects", codex / "sessions"]


def find_local_logs() -> list[Path]:
    """The log folders that exist and hold at least one file."""
    found = []
    for d in local_log_dirs():
        if d.is_dir() and any(p.is_file() for p in d.rglob("*")):
            found.append(d)
    return found
