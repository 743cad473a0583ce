"""A progress bar for uploading a large task folder, on stderr when it is a terminal.

The upload streams the packed folder in pieces (httpx sends an iterator with chunked encoding),
and each piece sent moves the bar. Small folders, and output that is not a terminal, show nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

SHOWN_FROM = 4 * 1024 * 1024  # bytes: smaller uploads take too little time for a bar
PIECE = 256 * 1024


def pieces(data: BinaryIO, advance: Callable[[int], None]) -> Iterator[bytes]:
    """``data`` in pieces of :data:`PIECE` bytes, calling ``advance(len(piece))`` as each is taken."""
    while piece := data.read(PIECE):
        advance(len(piece))
        yield piece


@contextmanager
def bar(total: int, console=None) -> Iterator[Callable[[int], None]]:
    """A function that moves a bar of ``total`` bytes on, shown while the block runs; a no-op
    function when ``total`` is under :data:`SHOWN_FROM` or the console is not a terminal."""
    from rich.console import Console

    console = console or Console(stderr=True)
    if total < SHOWN_FROM or not console.is_terminal:
        yield lambda size: None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    columns = (TextColumn("uploading the task folder"), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        job = progress.add_task("upload", total=total)
        yield lambda size: progress.advance(job, size)
