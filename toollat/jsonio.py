"""Strict JSON out of toollat: NaN and infinities become ``null``, numpy values plain numbers.
One helper for every ``--json`` output, bundle card and HTTP body (orjson does the work)."""
from __future__ import annotations

from typing import Any

import orjson

_OPTS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _default(v: Any) -> Any:
    if hasattr(v, "isoformat"):
        return v.isoformat()
    if hasattr(v, "item"):  # numpy scalars orjson does not take natively
        return v.item()
    return str(v)


def dumps_bytes(obj: Any, indent: bool = False, sort_keys: bool = False) -> bytes:
    opts = _OPTS | (orjson.OPT_INDENT_2 if indent else 0) | (orjson.OPT_SORT_KEYS if sort_keys else 0)
    return orjson.dumps(obj, default=_default, option=opts)


def dumps(obj: Any, indent: bool = True, sort_keys: bool = False) -> str:
    """Strict JSON text (parses with ``json.loads(..., parse_constant=<raise>)``)."""
    return dumps_bytes(obj, indent, sort_keys).decode()
