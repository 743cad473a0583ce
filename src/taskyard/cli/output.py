"""What every command shares: the one place errors are reported, tables, JSON, times and durations.

Rich and the SDK are imported inside the functions, so that ``taskyard --help`` starts fast.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, NoReturn

import typer
from typer.core import TyperGroup

from taskyard.cli.exit_codes import ExitCode, for_error
from taskyard.errors import ServerUnavailable, TaskyardError, Unauthorized

if TYPE_CHECKING:
    from typer._click import Context  # the Context commands are invoked with; typer does not export it

USAGE_ERROR = ExitCode.BAD_INPUT  # as for the usage errors the command line parser reports

HINTS: dict[type[TaskyardError], str] = {
    ServerUnavailable: "check TASKYARD_URL, or run `taskyard server status` to see the embedded server",
    Unauthorized: "check TASKYARD_TOKEN; `taskyard users add NAME` prints a new token",
}


class CliGroup(TyperGroup):
    """The root command group: every command runs inside :func:`reported_errors`."""

    def invoke(self, ctx: Context) -> Any:
        with reported_errors():
            return super().invoke(ctx)


@contextmanager
def reported_errors() -> Iterator[None]:
    """Turn taskyard and validation errors into one ``error: ...`` line on stderr and the exit code
    of the table in :mod:`taskyard.cli.exit_codes`."""
    try:
        yield
    except TaskyardError as exc:
        fail(exc.message, field=exc.field, code=for_error(exc), hint=_hint(exc))
    except ValueError as exc:
        from pydantic import ValidationError

        if not isinstance(exc, ValidationError):
            raise
        message, field = _validation_message(exc)
        fail(message, field=field, code=USAGE_ERROR)


def _hint(exc: TaskyardError) -> str | None:
    return next((hint for kind, hint in HINTS.items() if isinstance(exc, kind)), None)


def _validation_message(exc: Any) -> tuple[str, str | None]:
    errors = exc.errors()
    fields = [".".join(str(part) for part in error["loc"]) for error in errors]
    messages = [str(error["msg"]).removeprefix("Value error, ") for error in errors]
    if len(errors) == 1:
        return messages[0], fields[0] or None
    return "; ".join(f"{field}: {message}" if field else message for field, message in zip(fields, messages)), None


def fail(message: str, *, field: str | None = None, code: int = 1, hint: str | None = None) -> NoReturn:
    """Print ``error: message (field: X)`` and an optional hint on stderr, and exit with ``code``."""
    suffix = f" (field: {field})" if field else ""
    typer.echo(f"error: {message}{suffix}", err=True)
    if hint:
        typer.echo(f"hint: {hint}", err=True)
    raise typer.Exit(code)


def note(message: str) -> None:
    """A line for the person at the terminal (stderr), so that stdout stays clean for scripts."""
    typer.echo(message, err=True)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2))


def write_chunk(stream: str, text: str) -> None:
    """Write a chunk of task output as it came: stdout to stdout, stderr and system notes to stderr."""
    target = sys.stdout if stream == "stdout" else sys.stderr
    target.write(text)
    target.flush()


# -- tables -------------------------------------------------------------------------------------


def print_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, empty: str | None = None) -> None:
    """A table on stdout; cells are shown as plain text (never as Rich markup)."""
    from rich import box
    from rich.table import Table

    if not rows and empty:
        note(empty)
        return
    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*(_text(cell) for cell in row))
    _stdout_console().print(table)


def print_fields(fields: Sequence[tuple[str, Any]]) -> None:
    """``name  value`` lines, aligned, on stdout."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column(overflow="fold")
    for name, value in fields:
        grid.add_row(name, _text(value))
    _stdout_console().print(grid)


def _text(value: Any) -> Any:
    from rich.text import Text

    return Text("-" if value is None or value == "" else str(value))


def stdout_console() -> Any:
    """The Rich console of stdout; wide when stdout is not a terminal."""
    return _stdout_console()


def _stdout_console() -> Any:
    from rich.console import Console

    console = Console()
    # Piped output keeps whole rows instead of folding them to 80 columns.
    return console if console.is_terminal else Console(width=240)


# -- times --------------------------------------------------------------------------------------


def local_time(value: datetime | None) -> str:
    """A server time (UTC) shown in the local time zone."""
    if value is None:
        return "-"
    return _aware(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def duration(start: datetime | None, end: datetime | None) -> str:
    """``end - start`` for people (``1.2s``, ``3m05s``, ``2h10m``); up to now when ``end`` is None."""
    if start is None:
        return "-"
    end = _aware(end) if end is not None else datetime.now(timezone.utc)
    return seconds_text(max(0.0, (end - _aware(start)).total_seconds()))


def seconds_text(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
