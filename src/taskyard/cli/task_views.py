"""``taskyard tasks info | list-files | tail | top``: the Inductiva views of tasks.

Registered on the ``tasks`` group by :mod:`taskyard.cli.tasks`; kept here, apart from the other
task commands.
"""

from __future__ import annotations

import contextlib
import time
from typing import TYPE_CHECKING, Annotated

import typer

from taskyard.cli.output import duration, print_fields, print_table, stdout_console

if TYPE_CHECKING:
    from taskyard.models import TaskInfo

TaskIdArg = Annotated[str, typer.Argument(help="The task id (as `taskyard run` or `tasks list` shows it).")]
TOP_COLUMNS = ("ID", "FILE", "STATUS", "WORKER", "POOL", "USER", "ELAPSED")
TOP_SCAN = 500  # the newest tasks looked at for the ones still going


def info(task_id: TaskIdArg) -> None:
    """Summarize a task: status, worker, computation and total time, outputs, metadata."""
    from taskyard.sdk import Task

    task = Task(task_id)
    task.print_summary()
    metadata = task.get_metadata()
    if metadata:
        typer.echo("Metadata:")
        print_fields(sorted(metadata.items()))


def list_files(task_id: TaskIdArg) -> None:
    """List a task's files: stdout.txt and stderr.txt (its output streams), then its outputs with sizes."""
    from taskyard.errors import NotFound
    from taskyard.sdk import Task
    from taskyard.task_files import STREAMS

    task = Task(task_id)
    rows: list[tuple] = [(name, "-", "log") for name in STREAMS]
    with contextlib.suppress(NotFound):  # no outputs (yet)
        rows += [(entry.name, entry.size, "output") for entry in task.get_output_info().files]
    print_table(("NAME", "SIZE", "KIND"), rows)


def tail(
    task_id: TaskIdArg,
    files: Annotated[list[str], typer.Argument(help="stdout.txt, stderr.txt or a file of its outputs.")],
    lines: Annotated[int, typer.Option("--lines", "-n", min=0, help="How many last lines to print.")] = 10,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Go on printing stdout.txt / stderr.txt.")] = False,
) -> None:
    """Print the last lines of a task's files; with -f, follow its output streams until it ends
    (and exit with the code of its ending)."""
    from taskyard.cli.exit_codes import for_status
    from taskyard.sdk import Task

    task = Task(task_id)
    try:
        task.tail_files(files, lines=lines, follow=follow)
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if follow:
        raise typer.Exit(for_status(task.refresh().status))


def top(
    interval: Annotated[float, typer.Option("--interval", min=0.2, help="Seconds between refreshes.")] = 2.0,
    count: Annotated[
        int | None,
        typer.Option("--count", "-n", min=1, help="Refresh this many times, then exit (default: until Ctrl+C)."),
    ] = None,
) -> None:
    """A live view of the tasks that have not ended: status, worker, time since they started (or were
    submitted), refreshed every --interval seconds."""
    from rich.live import Live

    from taskyard.client import default_client

    client = default_client()
    with Live(_top_table(client), console=stdout_console(), auto_refresh=False, transient=False) as live:
        try:
            shown = 1
            while count is None or shown < count:
                time.sleep(interval)
                live.update(_top_table(client), refresh=True)
                shown += 1
        except KeyboardInterrupt:
            pass


def _top_table(client):
    from rich import box
    from rich.table import Table

    going = [task for task in client.list_tasks(limit=TOP_SCAN).tasks if not task.status.is_terminal()]
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(going)} task(s) not ended", title_justify="left")
    for column in TOP_COLUMNS:
        table.add_column(column, overflow="fold")
    for task in going:
        table.add_row(*_top_row(task))
    return table


def _top_row(task: TaskInfo) -> tuple[str, ...]:
    since = task.started_at or task.created_at  # running: since it started; else since it was submitted
    cells = (task.id, task.file_name, task.alias, task.worker_name, task.pool, task.user, duration(since, None))
    return tuple("-" if cell is None else str(cell) for cell in cells)
