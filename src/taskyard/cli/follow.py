"""Following a task: its output as it is printed, and a live status until the first line comes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

from taskyard.cli.exit_codes import ExitCode
from taskyard.cli.output import write_chunk
from taskyard.errors import TaskyardError

if TYPE_CHECKING:
    from taskyard.models import TaskInfo
    from taskyard.sdk import Task
    from taskyard.status import TaskStatus

INTERRUPTED = ExitCode.INTERRUPTED  # the shell's code for Ctrl+C
POLL_SECONDS = 0.5


def follow(task: Task) -> TaskStatus:
    """Print the task's output until it ends and return its final status.

    Ctrl+C stops following only: the task goes on, and the command exits with 130.
    """
    try:
        with waiting_status(task) as status:
            for stream, text in task.stream_logs():
                status.stop()
                write_chunk(stream, text)
    except KeyboardInterrupt:
        typer.echo(f"\nthe task goes on; stop it with: taskyard tasks kill {task.id}", err=True)
        raise typer.Exit(INTERRUPTED) from None
    return task.refresh().status


@contextmanager
def waiting_status(task: Task) -> Iterator[LiveStatus | NoStatus]:
    """A spinner with the task's status on stderr, only when stderr is a terminal."""
    from rich.console import Console

    console = Console(stderr=True)
    status = LiveStatus(task, console) if console.is_terminal else NoStatus()
    try:
        yield status
    finally:
        status.stop()


class NoStatus:
    def stop(self) -> None:
        pass


class LiveStatus:
    """A Rich status line kept up to date by a thread that polls the task until :meth:`stop`."""

    def __init__(self, task: Task, console) -> None:
        self._task = task
        self._stopped = threading.Event()
        self._status = console.status(_label(task.refresh()))
        self._status.start()
        threading.Thread(target=self._poll, name="taskyard-status", daemon=True).start()

    def stop(self) -> None:
        if not self._stopped.is_set():
            self._stopped.set()
            self._status.stop()

    def _poll(self) -> None:
        while not self._stopped.wait(POLL_SECONDS):
            try:
                info = self._task.client.task(self._task.id)
            except TaskyardError:
                continue  # the main thread reports errors; this line only shows progress
            if not self._stopped.is_set():
                self._status.update(_label(info))


def _label(info: TaskInfo):
    from rich.text import Text

    place = f" (position {info.position_in_queue})" if info.position_in_queue else ""
    return Text.assemble((info.alias, "bold"), place, f"  task {info.id}")
