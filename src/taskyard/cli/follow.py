"""Following a task: its output as it is printed, and a live status until the first line comes."""

from __future__ import annotations

import shutil
import sys
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

    On a terminal, a status line (state and elapsed time) stays below the output while the task
    runs. Ctrl+C stops following only: the task goes on, and the command exits with 130.
    """
    try:
        with waiting_status(task) as status:
            for stream, text in task.stream_logs():
                status.write(stream, text)
    except KeyboardInterrupt:
        typer.echo(f"\nthe task goes on; stop it with: taskyard tasks kill {task.id}", err=True)
        raise typer.Exit(INTERRUPTED) from None
    return task.refresh().status


@contextmanager
def waiting_status(task: Task) -> Iterator[LiveStatus | StatusLine | NoStatus]:
    """The task's status on stderr while it is followed: a line kept below the output when stdout and
    stderr are both the terminal; a spinner until the first output when only stderr is; else nothing."""
    from rich.console import Console

    err_console = Console(stderr=True)
    status: LiveStatus | StatusLine | NoStatus
    if err_console.is_terminal and Console().is_terminal:
        status = StatusLine(task)
    elif err_console.is_terminal:
        status = LiveStatus(task, err_console)
    else:
        status = NoStatus()
    try:
        yield status
    finally:
        status.stop()


class NoStatus:
    def write(self, stream: str, text: str) -> None:
        write_chunk(stream, text)

    def stop(self) -> None:
        pass


class LiveStatus(NoStatus):
    """A Rich status line kept up to date by a thread that polls the task until :meth:`stop` (or the
    first output: stdout is not the terminal it is on)."""

    def __init__(self, task: Task, console) -> None:
        self._task = task
        self._stopped = threading.Event()
        self._status = console.status(_label(task.refresh()))
        self._status.start()
        threading.Thread(target=self._poll, name="taskyard-status", daemon=True).start()

    def write(self, stream: str, text: str) -> None:
        self.stop()
        write_chunk(stream, text)

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


class StatusLine(NoStatus):
    """The task's status and elapsed time on the terminal's last line, below its output.

    The line is wiped before each piece of output and drawn again after it, when the output has
    ended its line (a line cut short waits for the rest). A thread polls the task and redraws it.
    """

    SPINNER = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"

    def __init__(self, task: Task) -> None:
        self._task = task
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._ask = threading.Event()  # set: poll the task now, not at the next tick
        self._info = task.refresh()
        self._turn = 0
        self._shown = False
        self._line_done = True
        self._draw()
        threading.Thread(target=self._poll, name="taskyard-status", daemon=True).start()

    def write(self, stream: str, text: str) -> None:
        with self._lock:
            self._wipe()
            write_chunk(stream, text)
            self._line_done = text.endswith("\n")
            self._draw_locked()
        status = self._info.status
        if not status.is_running() and not status.is_terminal():
            self._ask.set()  # it prints, so it runs: show that without waiting for the next tick

    def stop(self) -> None:
        with self._lock:
            self._stopped.set()
            self._ask.set()
            self._wipe()

    def _poll(self) -> None:
        while True:
            self._ask.wait(POLL_SECONDS)
            self._ask.clear()
            if self._stopped.is_set():
                return
            try:
                self._info = self._task.client.task(self._task.id)
            except TaskyardError:
                continue
            self._turn += 1
            self._draw()

    def _draw(self) -> None:
        with self._lock:
            self._draw_locked()

    def _draw_locked(self) -> None:
        if self._stopped.is_set() or not self._line_done:
            return
        spin = self.SPINNER[self._turn % len(self.SPINNER)]
        width = shutil.get_terminal_size().columns - 1  # a line that wraps could not be wiped
        sys.stderr.write(f"\r\x1b[2K{spin} {_label(self._info).plain}"[: width + 5])
        sys.stderr.flush()
        self._shown = True

    def _wipe(self) -> None:
        if self._shown:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()
            self._shown = False


def _label(info: TaskInfo):
    """``In Progress  12.3s  task ID``; a queued task says its place in the queue."""
    from rich.text import Text

    from taskyard.cli.output import duration

    place = f" (position {info.position_in_queue})" if info.position_in_queue else ""
    since = info.started_at if info.started_at is not None and info.status.is_running() else info.created_at
    return Text.assemble((info.alias, "bold"), place, f"  {duration(since, None)}", f"  task {info.id}")
