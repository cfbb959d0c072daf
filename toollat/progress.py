"""The one progress bar every long step uses (ingest, embedding, harvest, online replay):
rich, on stderr, gone when done, silent when disabled (``--json``, not a terminal, ``--quiet``)."""
from __future__ import annotations


def progress_bar(enabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    disable=not enabled, transient=True)
