"""The shared corpus replicated N times as raw logs, with session and call ids made unique.

``replicate_corpus(src, dst, copies)`` writes ``dst/r<k>/<source>/...`` for k in 0..copies-1;
copy 0 is the corpus as it is, copy k>0 has every id-shaped token (UUIDs, Claude ``toolu_``
ids, Codex ``call_`` ids, message ids) suffixed with ``r<k>``, so no call or session of one
copy collides with another's and ingest keeps them all (forked-session copies inside a copy
still share ids, so they are still dropped, once per copy). Other experiments import it.
"""
from __future__ import annotations

import gzip
import re
from pathlib import Path

from toollat.ingest.files import discover, open_binary

_ID = re.compile(rb"\b(?:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}|(?:toolu|call|msg|req)_[A-Za-z0-9]+)\b")


def replicate_corpus(src: Path, dst: Path, copies: int) -> list[Path]:
    """Write ``copies`` id-disjoint copies of the logs under ``src``; returns the copy folders."""
    files = discover([Path(src)])
    out = []
    for k in range(copies):
        root = Path(dst) / f"r{k}"
        out.append(root)
        if (root / ".done").exists():  # a finished copy from an earlier run is reused
            continue
        suffix = f"r{k}".encode()
        for f in files:
            target = root / f.display  # the path under src, so sources stay the same folders
            target.parent.mkdir(parents=True, exist_ok=True)
            with open_binary(f.path) as fin, gzip.open(target, "wb", compresslevel=1) as fout:
                for line in fin:
                    fout.write(line if k == 0 else _ID.sub(lambda m: m.group(0) + suffix, line))
        (root / ".done").write_text("ok\n")
    return out
