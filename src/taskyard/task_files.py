"""A task's files, as the Inductiva API names them: its two output streams, ``stdout.txt`` and
``stderr.txt`` (read from its log, so they can be followed while it runs), and the files of its
outputs (there once it has ended and uploaded them). ``Task.list_files`` and ``Task.tail_files``
are built on these functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, TextIO

from taskyard.errors import NotFound

if TYPE_CHECKING:
    from taskyard.sdk import Task

#: the file names of the task's output streams
STREAMS = {"stdout.txt": "stdout", "stderr.txt": "stderr"}


def names(task: Task) -> list[str]:
    """``stdout.txt``, ``stderr.txt``, then the files of the task's outputs, if it has any yet."""
    try:
        outputs = [entry.name for entry in task.get_output_info().files]
    except NotFound:
        outputs = []
    return [*STREAMS, *outputs]


def tail(task: Task, files: Sequence[str] | None, lines: int, follow: bool, out: TextIO) -> None:
    """Write the last ``lines`` lines of each of ``files`` (default: all of :func:`names`) to ``out``,
    each under a ``==> name <==`` line when there are several; with ``follow``, go on writing what the
    task prints to the stream files among them until it ends (an output file does not change)."""
    files = list(files) if files else names(task)
    seen = 0
    for name in files:
        text, seen = _tail_of(task, name, lines, seen)
        if len(files) > 1:
            out.write(f"==> {name} <==\n")
        out.write(text)
        out.flush()
    followed = {STREAMS[name] for name in files if name in STREAMS}
    if follow and followed:
        _follow(task, followed, seen, out)


def last_lines(text: str, lines: int) -> str:
    """The last ``lines`` lines of ``text`` (a final line without its newline counts as one)."""
    if lines <= 0:
        return ""
    return "".join(text.splitlines(keepends=True)[-lines:])


def _tail_of(task: Task, name: str, lines: int, seen: int) -> tuple[str, int]:
    if name in STREAMS:
        text, last = stream_text(task, STREAMS[name])
        return last_lines(text, lines), max(seen, last)
    return task.client.output_tail(task.id, name, lines), seen


def stream_text(task: Task, stream: str) -> tuple[str, int]:
    """All the task has printed so far on ``stream`` (``"stdout"`` or ``"stderr"``), and the last
    log sequence number read."""
    after, parts = 0, []
    while True:
        page = task.client.logs(task.id, after=after)
        parts += [chunk.text for chunk in page.chunks if chunk.stream == stream]
        if not page.chunks or page.done:
            return "".join(parts), page.last_seq
        after = page.last_seq


def _follow(task: Task, streams: set[str], after: int, out: TextIO) -> None:
    for stream, text in task.stream_logs(after=after):
        if stream in streams:
            out.write(text)
            out.flush()
