"""The exit codes of every ``taskyard`` command, in one table, and how errors and task endings map to them.

=====  ==============================================================================================
code   meaning
=====  ==============================================================================================
0      success (for ``run`` and ``tasks logs -f``: the task ended Success)
1      the task ended Failed (its script exited non-zero); also an error of the server itself
2      bad usage or input: an unknown option or value, a request that cannot succeed as given
       (a task that has already ended cannot be killed), a task folder over the server's upload limit
3      the task ended any other way: Killed, Task Timed Out, Runtime Error, Machine Terminated...
4      the server could not be reached, or it refused the token (unknown, or not allowed to do this)
5      not found: no such task, worker, pool, secret or user
130    Ctrl+C: you stopped following; the task goes on
=====  ==============================================================================================
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

from taskyard.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    NotFound,
    ServerUnavailable,
    TaskError,
    TaskyardError,
    TooLarge,
    Unauthorized,
    Unsupported,
)

if TYPE_CHECKING:
    from taskyard.status import TaskStatus


class ExitCode(IntEnum):
    SUCCESS = 0
    FAILED = 1
    BAD_INPUT = 2
    OTHER_END = 3
    UNREACHABLE = 4
    NOT_FOUND = 5
    INTERRUPTED = 130


#: the first class an error is an instance of gives its code; any other TaskyardError exits FAILED
ERROR_CODES: tuple[tuple[type[TaskyardError], ExitCode], ...] = (
    (InvalidInput, ExitCode.BAD_INPUT),
    (TooLarge, ExitCode.BAD_INPUT),
    (Conflict, ExitCode.BAD_INPUT),
    (Unsupported, ExitCode.BAD_INPUT),
    (ServerUnavailable, ExitCode.UNREACHABLE),
    (Unauthorized, ExitCode.UNREACHABLE),
    (Forbidden, ExitCode.UNREACHABLE),
    (NotFound, ExitCode.NOT_FOUND),
    (TaskError, ExitCode.FAILED),
)

#: the table as ``taskyard --help`` shows it
HELP = (
    "[bold]Exit codes[/] (every command)\n\n"
    "0    success (run, tasks logs -f: the task ended Success)\n\n"
    "1    the task ended Failed\n\n"
    "2    bad usage or input, incl. a folder over the server's upload limit\n\n"
    "3    the task ended any other way: Killed, Task Timed Out, Runtime Error...\n\n"
    "4    the server could not be reached or refused the token\n\n"
    "5    not found: no such task, worker, pool, secret or user\n\n"
    "130  Ctrl+C: you stopped following; the task goes on"
)


def for_error(exc: TaskyardError) -> ExitCode:
    """The exit code for an error a command could not get past."""
    return next((code for kind, code in ERROR_CODES if isinstance(exc, kind)), ExitCode.FAILED)


def for_status(status: TaskStatus) -> ExitCode:
    """The exit code of a command that followed a task to its end: 0 Success, 1 Failed, 3 any other end."""
    from taskyard.status import TaskStatus

    return {TaskStatus.SUCCESS: ExitCode.SUCCESS, TaskStatus.FAILED: ExitCode.FAILED}.get(status, ExitCode.OTHER_END)
