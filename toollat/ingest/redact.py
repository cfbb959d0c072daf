"""Redaction of tool arguments on ingest (on by default; ``toollat ingest --no-redact`` keeps them).

Tool arguments can hold secrets and personal data. Three kinds of strings are replaced,
with the same placeholders the shared corpus uses, so redacted and pre-scrubbed data look alike:

- home directories: ``/Users/<name>``, ``/home/<name>``, ``C:\\Users\\<name>`` -> ``.../user``
- e-mail addresses -> ``user@example.com`` (``git@host`` remote URLs are kept)
- token-shaped strings -> ``[REDACTED]``: well-known key prefixes (``sk-``, ``ghp_``,
  ``github_pat_``, ``xoxb-``, ``AKIA``, ``AIza``, ``glpat-``, ``npm_``), JWTs, ``Bearer`` values,
  values assigned to names containing TOKEN/SECRET/PASSWORD/API_KEY, and long random-looking
  mixed-case alphanumeric runs. Hex digests and UUIDs are not secrets and are kept.

Redaction works on decoded string values (never on JSON text), so escapes stay valid.
"""
from __future__ import annotations

import re
from collections import Counter
from typing import Any

_HOME_POSIX = re.compile(r"(?<![\w.])(/Users/|/home/)(?!user(?![\w.-]))([A-Za-z0-9._-]+)")
_HOME_WIN = re.compile(r"(?i)(\b[A-Z]:(?:\\+|/)Users(?:\\+|/))(?!user(?![\w.-]))([A-Za-z0-9._ -]+?)(?=\\|/|$|[\s'\"])")
_EMAIL = re.compile(r"(?<![\w.+-])(?!git@)[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")
_KNOWN_TOKENS = re.compile(
    r"\b(?:sk-(?:ant-)?[A-Za-z0-9_-]{20,}"
    r"|gh[pousr]_[A-Za-z0-9]{30,}"
    r"|github_pat_[A-Za-z0-9_]{20,}"
    r"|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|AKIA[0-9A-Z]{16}"
    r"|AIza[0-9A-Za-z_-]{35}"
    r"|glpat-[A-Za-z0-9_-]{20,}"
    r"|npm_[A-Za-z0-9]{36}"
    r"|eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,})"
)
_TOKEN_PREFIXES = ("sk-", "gh", "github_pat_", "xox", "AKIA", "AIza", "glpat-", "npm_", "eyJ")
_SECRET_WORDS = ("token", "secret", "passw", "key")
_BEARER = re.compile(r"(?i)\b(Bearer\s+)([A-Za-z0-9._~+/=-]{12,})")
_ASSIGNED = re.compile(
    r"(?i)\b([A-Z0-9_.-]*(?:TOKEN|SECRET|PASSWORD|PASSWD|API[_-]?KEY|ACCESS[_-]?KEY)[A-Z0-9_]*"
    r"\s*[=:]\s*['\"]?)(?!\[REDACTED\])([^\s'\"$]{6,})"
)
_LONG_RUN = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{32,}(?![A-Za-z0-9_-])")
_WORDLIKE = re.compile(r"[a-z]{6,}|[A-Z]{6,}")

PLACEHOLDER = "[REDACTED]"


def _random_looking(s: str) -> bool:
    """A long run that looks like a key, not an identifier, digest or UUID."""
    digits = sum(c.isdigit() for c in s)
    upper = sum(c.isupper() for c in s)
    lower = sum(c.islower() for c in s)
    return digits >= 4 and upper >= 2 and lower >= 2 and not _WORDLIKE.search(s)


def redact_text(text: str, counts: Counter | None = None) -> str:
    """Redact one string; ``counts`` (if given) is incremented by kind."""
    if not text:
        return text

    def sub(pattern: re.Pattern, repl, kind: str, s: str) -> str:
        out, n = pattern.subn(repl, s)
        if n and counts is not None:
            counts[kind] += n
        return out

    # Substring guards skip patterns that cannot match: arguments are often whole files.
    lower = text.lower()
    if "/users/" in lower or "/home/" in lower:
        text = sub(_HOME_POSIX, r"\1user", "home_path", text)
    if "users" in lower and ":" in text:
        text = sub(_HOME_WIN, r"\1user", "home_path", text)
    if "@" in text:
        text = sub(_EMAIL, "user@example.com", "email", text)
    if any(p in text for p in _TOKEN_PREFIXES):
        text = sub(_KNOWN_TOKENS, PLACEHOLDER, "token", text)
    if "bearer" in lower:
        text = sub(_BEARER, r"\1" + PLACEHOLDER, "token", text)
    if any(w in lower for w in _SECRET_WORDS):
        text = sub(_ASSIGNED, r"\1" + PLACEHOLDER, "token", text)

    def long_run(m: re.Match) -> str:
        if not _random_looking(m.group(0)):
            return m.group(0)
        if counts is not None:
            counts["token"] += 1
        return PLACEHOLDER

    return _LONG_RUN.sub(long_run, text)


def redact_value(value: Any, counts: Counter | None = None) -> Any:
    """Redact every string inside a JSON-like value (dict keys are kept)."""
    if isinstance(value, str):
        return redact_text(value, counts)
    if isinstance(value, dict):
        return {k: redact_value(v, counts) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_value(v, counts) for v in value]
    return value
