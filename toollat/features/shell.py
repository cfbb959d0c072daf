"""Parse a shell command line into what predicts its run time.

Not a full shell grammar: a tokenizer that respects quotes, splits on ``&&``, ``||``, ``;``,
``|`` and newlines, and then, per segment, strips what only wraps the real program (``cd X``,
``VAR=value``, ``sudo``, ``timeout N``, ``nohup``, ``time``, ``env``, runners such as
``mise exec --``, ``uv run``, ``npx``). The *main* program is the first segment's real program
that is not ``cd``/``echo``/``export``; its subcommand is the first word that is not a flag
(``git status``, ``go test``, ``npm run build`` -> ``npm run:build``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

_SPLIT = re.compile(r"(&&|\|\||;|\||\n|&(?!>))")
_ASSIGN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
_DURATION = re.compile(r"^([0-9]*\.?[0-9]+)(ms|s|m|h|d)?$")
_WRAPPERS = {"sudo", "nohup", "time", "env", "command", "exec", "nice", "stdbuf", "xargs", "caffeinate", "rtk"}
_QUIET_FIRST = {"cd", "pushd", "echo", "export", "set", "source", ".", "true", "printf", "sleep", "clear", "unset", "local"}
# Programs whose second word picks what actually runs.
_SUBCOMMANDS = {
    "git", "go", "npm", "pnpm", "yarn", "bun", "bunx", "npx", "cargo", "gh", "docker", "kubectl", "pip",
    "pip3", "uv", "poetry", "mise", "just", "make", "dotnet", "brew", "apt", "apt-get", "helm",
    "terraform", "gcloud", "aws", "az", "deno", "node", "python", "python3", "pytest", "rustup",
    "conda", "swift", "mvn", "gradle", "./gradlew", "composer", "bundle", "rails", "rake", "tsc",
    "golangci-lint", "entire", "claude", "codex", "jq", "sqlite3", "psql", "redis-cli", "kind",
    "minikube", "ollama", "hugo", "task",
}
_RUNNERS = {("mise", "exec"), ("mise", "x"), ("uv", "run"), ("poetry", "run"), ("bundle", "exec"), ("pnpm", "exec"), ("npx", None), ("bunx", None)}

CATEGORIES: dict[str, tuple[str, ...]] = {
    "test": ("test", "pytest", "jest", "vitest", "mocha", "rspec", "ctest", "tox", "nox", "check", "spec", "e2e"),
    "build": ("build", "compile", "tsc", "make", "webpack", "vite", "rollup", "esbuild", "bundle", "gradle", "mvn", "package", "publish", "release", "goreleaser"),
    "lint": ("lint", "golangci-lint", "eslint", "ruff", "flake8", "mypy", "pylint", "prettier", "fmt", "gofmt", "vet", "clippy", "format", "typecheck", "staticcheck", "biome"),
    "install": ("install", "add", "sync", "download", "tidy", "restore", "update", "upgrade", "vendor", "ci", "setup"),
    "network": ("curl", "wget", "fetch", "pull", "push", "clone", "gh", "http", "ssh", "scp", "rsync", "ping", "nc", "aws", "gcloud", "az", "kubectl", "helm", "docker", "dig"),
    "vcs_local": ("status", "diff", "log", "show", "add", "commit", "branch", "checkout", "switch", "stash", "rebase", "merge", "reset", "restore", "rev-parse", "blame", "tag", "worktree", "cherry-pick"),
    "wait": ("watch", "wait", "sleep", "timeout", "until", "poll", "attach", "logs", "serve", "dev", "start"),
    "search": ("grep", "rg", "ag", "find", "fd", "ls", "tree", "locate", "which", "wc", "du", "cat", "head", "sed", "awk", "jq", "stat", "file", "diff", "sort", "uniq", "cut", "tr", "less", "more", "readlink", "pwd", "basename", "dirname", "realpath"),
    "script": ("python", "python3", "node", "bun", "deno", "ruby", "perl", "bash", "sh", "zsh", "go", "java", "php", "osascript", "powershell", "pwsh"),
}


@dataclass
class ShellCommand:
    program: str = ""            # main program (basename), "" if none
    subcommand: str = ""         # "program sub" ("" if the program has none)
    programs: list[str] = field(default_factory=list)   # real program of every segment
    n_segments: int = 0
    n_pipes: int = 0
    n_and: int = 0               # && and || chains
    n_semicolons: int = 0
    n_words: int = 0
    n_flags: int = 0
    cd_prefix: bool = False
    background: bool = False     # trailing &, nohup, disown
    timeout_s: float | None = None   # timeout N, --timeout=N, -timeout N
    sleep_s: float = 0.0         # total of `sleep N`
    has_redirect: bool = False
    has_loop: bool = False       # for/while/until
    has_heredoc: bool = False
    categories: set[str] = field(default_factory=set)


def tokenize(text: str) -> list[str]:
    """Split into words and operators, keeping quoted strings whole (quotes dropped)."""
    out: list[str] = []
    cur: list[str] = []
    i, n = 0, len(text)
    quote = ""
    while i < n:
        c = text[i]
        if quote:
            if c == quote:
                quote = ""
            elif c == "\\" and quote == '"' and i + 1 < n:
                i += 1
                cur.append(text[i])
            else:
                cur.append(c)
        elif c in "'\"":
            quote = c
        elif c == "$" and text[i + 1:i + 2] == "(":  # $( ... ) stays one word
            depth, j = 0, i
            while j < n:
                depth += (text[j] == "(") - (text[j] == ")")
                cur.append(text[j])
                if depth == 0 and text[j] == ")":
                    break
                j += 1
            i = j
        elif c == "\\" and i + 1 < n:
            i += 1
            if text[i] != "\n":
                cur.append(text[i])
        elif c in " \t\r":
            if cur:
                out.append("".join(cur))
                cur = []
        elif c in "&|;\n":
            if cur:
                out.append("".join(cur))
                cur = []
            two = text[i:i + 2]
            if two in ("&&", "||"):
                out.append(two)
                i += 1
            elif c == "&" and (text[i + 1:i + 2] == ">" or (i > 0 and text[i - 1] in "<>")):
                cur.append(c)
            else:
                out.append(c)
        else:
            cur.append(c)
        i += 1
    if cur:
        out.append("".join(cur))
    return out


def _seconds(word: str) -> float | None:
    m = _DURATION.match(word)
    if not m:
        return None
    v = float(m.group(1))
    return v * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[m.group(2)]


def _basename(word: str) -> str:
    return word.rsplit("/", 1)[-1].rsplit("\\", 1)[-1].lower() if word else ""


def parse(command: str) -> ShellCommand:
    sc = ShellCommand()
    if not command or not command.strip():
        return sc
    sc.has_heredoc = "<<" in command
    if sc.has_heredoc:  # the heredoc body is data, not commands
        first, _, rest = command.partition("\n")
        command = first if "<<" in first else command
    tokens = tokenize(command[:4000])
    segments: list[list[str]] = [[]]
    for t in tokens:
        if t in ("&&", "||"):
            sc.n_and += 1
            segments.append([])
        elif t == "|":
            sc.n_pipes += 1
            segments.append([])
        elif t in (";", "\n"):
            sc.n_semicolons += t == ";"
            segments.append([])
        elif t == "&":
            sc.background = True
            segments.append([])
        else:
            segments[-1].append(t)
    segments = [s for s in segments if s]
    sc.n_segments = len(segments)
    for si, seg in enumerate(segments):
        sc.n_words += len(seg)
        words = list(seg)
        # strip assignments and wrappers
        while words and (_ASSIGN.match(words[0]) or _basename(words[0]) in _WRAPPERS or words[0] in ("{", "(", "!")):
            w = _basename(words.pop(0))
            if w == "nohup":
                sc.background = True
        if words and _basename(words[0]) in ("timeout", "gtimeout"):
            words.pop(0)
            while words and words[0].startswith("-"):
                words.pop(0)
            if words:
                sc.timeout_s = _seconds(words.pop(0))
        if not words:
            continue
        prog = _basename(words[0])
        if prog in ("for", "select", "case"):  # `for x in ...`: the loop header runs nothing
            sc.has_loop = True
            continue
        if prog in ("while", "until", "do", "done", "then", "else", "if", "fi", "esac"):
            sc.has_loop = sc.has_loop or prog in ("while", "until")
            words = words[1:]
            if not words:
                continue
            prog = _basename(words[0])
        # runners: `mise exec -- go test` -> go test
        if len(words) > 1 and ((prog, words[1]) in _RUNNERS or (prog, None) in _RUNNERS):
            rest = words[2:] if (prog, words[1]) in _RUNNERS else words[1:]
            rest = [w for w in rest if w != "--"]
            while rest and rest[0].startswith("-"):
                rest.pop(0)
            if rest:
                words, prog = rest, _basename(rest[0])
        if prog == "sleep" and len(words) > 1:
            sc.sleep_s += _seconds(words[1]) or 0.0
        sc.programs.append(prog)
        for j, w in enumerate(words[1:], start=1):
            if w.startswith("-"):
                sc.n_flags += 1
                low = w.lower()
                if low.startswith(("--timeout", "-timeout")):
                    val = low.split("=", 1)[1] if "=" in low else (words[j + 1] if j + 1 < len(words) else "")
                    secs = _seconds(val.lower())
                    if secs is not None:
                        sc.timeout_s = secs
            if w in (">", ">>", "2>", "2>&1", "&>") or w.startswith((">", "2>")):
                sc.has_redirect = True
        if prog in ("cd", "pushd") and si == 0 and len(segments) > 1:
            sc.cd_prefix = True
        if not sc.program and prog not in _QUIET_FIRST:
            sc.program = prog
            sc.subcommand = _subcommand(prog, words)
    if not sc.program and sc.programs:
        sc.program = sc.programs[0]
        sc.subcommand = ""
    if command.rstrip().endswith("&") and not command.rstrip().endswith("&&"):
        sc.background = True
    words = set(sc.programs) | set(sc.subcommand.split(" ")[1:2]) | {
        w.lower() for w in tokens[:40] if w and not w.startswith("-") and len(w) < 30}
    for cat, keys in CATEGORIES.items():
        if any(k in words for k in keys):
            sc.categories.add(cat)
    if "tail" in sc.programs and ("-f" in tokens or "-F" in tokens):
        sc.categories.add("wait")
    return sc


def _subcommand(prog: str, words: list[str]) -> str:
    if prog not in _SUBCOMMANDS:
        return ""
    rest = [w for w in words[1:] if not w.startswith("-") and "=" not in w]
    if prog in ("python", "python3") and "-m" in words:
        i = words.index("-m")
        return f"{prog} -m:{words[i + 1]}" if i + 1 < len(words) else prog
    if not rest:
        return prog
    sub = rest[0].lower()
    if prog in ("npm", "pnpm", "yarn", "bun", "mise", "just", "task") and sub == "run" and len(rest) > 1:
        sub = f"run:{rest[1].lower()}"
    if prog in ("python", "python3", "node", "deno", "bash", "sh"):
        sub = _basename(sub)
    return f"{prog} {sub[:40]}"
