"""Tool name -> tool family: the one mapping used everywhere (ingest, features, baselines).

Families (docs/ARCHITECTURE.md, "Canonical calls table"): shell, search, read, edit, write, web, agent, human, plan, mcp, other.
Claude Code, Codex and TraceLab names are listed explicitly; MCP tools are folded into
``mcp`` by their prefix (Claude Code ``mcp__server__tool``; Codex tools whose namespace
starts with ``mcp__`` are named that way by the Codex reader). Anything unknown is ``other``.
Lookup is case-insensitive so ``grep``/``Grep`` and ``shell``/``Shell`` agree.
"""
from __future__ import annotations

FAMILIES: tuple[str, ...] = (
    "shell", "search", "read", "edit", "write", "web", "agent", "human", "plan", "mcp", "other",
)

_BY_FAMILY: dict[str, tuple[str, ...]] = {
    # Commands run in a shell, including Codex polls of a running command (write_stdin) and
    # Codex "code mode" scripts (exec / wait), and reads of background shell output.
    "shell": (
        "Bash", "PowerShell", "BashOutput", "KillShell", "KillBash", "TaskOutput", "Monitor",
        "exec_command", "shell", "local_shell", "container.exec", "shell_command",
        "write_stdin", "exec", "wait",
    ),
    "search": ("Grep", "Glob", "LS", "LSP", "ToolSearch", "grep", "glob", "list_dir", "find_files"),
    "read": ("Read", "NotebookRead", "view_image", "read_file"),
    "edit": ("Edit", "MultiEdit", "NotebookEdit", "apply_patch", "str_replace", "edit_file"),
    "write": ("Write", "create_file", "write_file"),
    "web": ("WebFetch", "WebSearch", "web_search", "web_fetch"),
    # Subagents: the call blocks while another agent works.
    "agent": (
        "Task", "Agent", "SendMessage", "TaskStop", "Workflow",
        "spawn_agent", "wait_agent", "send_message", "followup_task", "list_agents", "close_agent",
    ),
    # A human answers: these wait on a person.
    "human": ("AskUserQuestion", "ask_question", "request_user_input"),
    "plan": (
        "ExitPlanMode", "EnterPlanMode", "TodoWrite", "TodoRead", "TaskCreate", "TaskUpdate",
        "TaskList", "TaskGet", "update_plan",
    ),
}

_LOOKUP: dict[str, str] = {
    name.lower(): family for family, names in _BY_FAMILY.items() for name in names
}


def tool_family(tool_name: str | None) -> str:
    """The family of a tool name; ``other`` for names this mapping does not know."""
    if not tool_name:
        return "other"
    if tool_name.startswith("mcp__"):
        return "mcp"
    return _LOOKUP.get(tool_name.lower(), "other")


def names_like(tool_name: str) -> list[str]:
    """The listed tool names equal to ``tool_name`` but for case (``bash`` -> ``["Bash"]``): the
    harnesses match names exactly, so these are other tools, named the way a user may have meant."""
    return [n for names in _BY_FAMILY.values() for n in names if n.lower() == tool_name.lower() and n != tool_name]
