"""Timestamps: the one parser of the ISO-8601 stamps agent logs and API requests carry."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any


def parse_ts_ms(value: Any) -> int | None:
    """ISO-8601 timestamp (``...Z`` or with offset) -> epoch milliseconds; None if unusable."""
    if not isinstance(value, str) or len(value) < 10:
        return None
    try:
        dt = datetime.fromisoformat(value)
    except ValueError:
        return None
    if dt.tzinfo is None:  # logs write UTC; a naive stamp is taken as UTC
        dt = dt.replace(tzinfo=timezone.utc)
    return round(dt.timestamp() * 1000)
