"""``taskyard tasks``: list, show, read, kill and download tasks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from taskyard.cli.output import duration, local_time, print_fields, print_json, print_table

if TYPE_CHECKING:
    from taskyard.callbacks import CallbackList
    from taskyard.models import TaskInfo

app = typer.Typer(help="List, inspect, follow, kill and download tasks.", no_args_is_help=True)

TaskIdArg = Annotated[str, typer.Argument(help="The task id (as `taskyard run` or `tasks list` shows it).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]

TASK_COLUMNS = ("ID", "FILE", "STATUS", "WORKER", "CREATED", "DURATION")
HISTORY_COLUMNS = ("STATUS", "START", "END", "DURATION", "REASON")
ATTEMPT_COLUMNS = ("DELIVERY", "STATE", "ATTEMPT AT", "HTTP", "ERROR")


def _status_code(value: str | None) -> str | None:
    """``"In Queue"``, ``in_queue`` or ``IN QUEUE`` -> ``"in_queue"``."""
    from taskyard.status import TaskStatus

    if value is None:
        return None
    try:
        return TaskStatus.from_alias(value).value
    except ValueError:
        names = ", ".join(status.value for status in TaskStatus)
        raise typer.BadParameter(f"unknown status {value!r}; use one of: {names}") from None


StatusOpt = Annotated[
    str | None,
    typer.Option(callback=_status_code, help="Only tasks in this status: a code (in_queue) or a name ('In Queue')."),
]
LimitOpt = Annotated[int, typer.Option(min=1, max=500, help="Show at most this many tasks.")]


@app.command("list")
def list_tasks(status: StatusOpt = None, limit: LimitOpt = 20, as_json: JsonOpt = False) -> None:
    """List tasks, newest first (an admin sees everyone's)."""
    from taskyard.client import default_client

    tasks = default_client().list_tasks(limit=limit, status=status).tasks
    if as_json:
        print_json([task.model_dump(mode="json") for task in tasks])
        return
    print_table(TASK_COLUMNS, [_task_row(task) for task in tasks], empty="no tasks")


def _task_row(task: TaskInfo) -> tuple:
    ran = duration(task.started_at, task.finished_at)
    return task.id, task.file_name, task.alias, task.worker_name, local_time(task.created_at), ran


@app.command()
def show(task_id: TaskIdArg, as_json: JsonOpt = False) -> None:
    """Show a task: its fields and its status history."""
    from taskyard.client import default_client

    client = default_client()
    info = client.task(task_id)
    if as_json:
        typer.echo(info.model_dump_json(indent=2))
        return
    print_fields(_task_fields(info))
    typer.echo()
    print_table(HISTORY_COLUMNS, [_history_row(change) for change in info.status_history])
    _print_callbacks(client.callbacks(task_id))


def _print_callbacks(listing: CallbackList) -> None:
    if listing.url is None:
        return
    typer.echo()
    typer.echo(f"Callback: {listing.url}")
    print_table(ATTEMPT_COLUMNS, _attempt_rows(listing), empty="no delivery yet (sent when the task ends)")


def _attempt_rows(listing: CallbackList) -> list[tuple]:
    rows: list[tuple] = []
    for delivery in listing.deliveries:
        if not delivery.attempts:
            rows.append((delivery.id, delivery.state, "-", "-", None))
        for attempt in delivery.attempts:
            rows.append((delivery.id, delivery.state, local_time(attempt.at), attempt.status_code, attempt.error))
    return rows


@app.command()
def callback(
    task_id: TaskIdArg,
    resend: Annotated[bool, typer.Option("--resend", help="Send the ended task's callback again.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a task's callback deliveries and their attempts; with --resend, send it again."""
    from taskyard.client import default_client

    client = default_client()
    if resend:
        typer.echo(f"callback of task {task_id} queued again as delivery {client.resend_callback(task_id).id}")
    listing = client.callbacks(task_id)
    if as_json:
        typer.echo(listing.model_dump_json(indent=2))
        return
    if listing.url is None:
        typer.echo(f"task {task_id} has no callback_url")
        return
    _print_callbacks(listing)


@app.command("signing-secret")
def signing_secret() -> None:
    """Print your secret for checking the X-Taskyard-Signature header of callbacks."""
    from taskyard.client import default_client

    typer.echo(default_client().signing_secret())


def _task_fields(info: TaskInfo) -> list[tuple[str, object]]:
    return [
        ("ID", info.id),
        ("FILE", info.file_name),
        ("STATUS", info.alias),
        ("REASON", info.reason),
        ("EXIT CODE", info.exit_code),
        ("USER", info.user),
        ("POOL", info.pool),
        ("WORKER", info.worker_name),
        ("ATTEMPT", info.attempt),
        ("CREATED", local_time(info.created_at)),
        ("STARTED", local_time(info.started_at)),
        ("FINISHED", local_time(info.finished_at)),
        ("DURATION", duration(info.started_at, info.finished_at)),
        ("OUTPUTS", _outputs_text(info)),
    ]


def _outputs_text(info: TaskInfo) -> str:
    if info.outputs is None:
        return "none"
    kind = "partial" if info.outputs.partial else "complete"
    return f"{info.outputs.size} bytes, {kind} (taskyard tasks download {info.id})"


def _history_row(change) -> tuple:
    end = local_time(change.ended_at) if change.ended_at else "-"
    ran = duration(change.started_at, change.ended_at) if change.ended_at else "-"
    return change.alias, local_time(change.started_at), end, ran, change.reason


@app.command()
def logs(
    task_id: TaskIdArg,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Go on printing until the task ends.")] = False,
) -> None:
    """Print what a task has printed so far; with -f, follow it until it ends and exit with the code
    of its ending (0 Success, 1 Failed, 3 any other: see `taskyard --help`)."""
    from taskyard.sdk import Task

    task = Task(task_id)
    if follow:
        from taskyard.cli.exit_codes import for_status
        from taskyard.cli.follow import follow as follow_task

        raise typer.Exit(for_status(follow_task(task)))
    sys.stdout.write(task.logs())
    sys.stdout.flush()


@app.command()
def kill(
    task_id: TaskIdArg,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until the task has stopped.")] = True,
) -> None:
    """Kill a task and print its new status (the worker gets SIGTERM, then SIGKILL)."""
    from taskyard.sdk import Task

    typer.echo(Task(task_id).kill(wait=wait).alias)


@app.command()
def download(
    task_id: TaskIdArg,
    directory: Annotated[Path, typer.Option("--dir", help="Where to put the outputs.", file_okay=False)] = Path("."),
) -> None:
    """Download the files a task wrote to its output folder (TASKYARD_OUTPUT_DIR)."""
    from taskyard.sdk import Task

    task = Task(task_id)
    target = task.download_outputs(output_dir=directory)
    if target == directory:
        typer.echo(f"outputs of task {task_id} saved to {target.resolve()}")
    else:
        typer.echo(f"partial outputs of task {task_id} (it did not succeed) saved to {target.resolve()}")


# -- the Inductiva views: info, list-files, tail, top (in taskyard.cli.task_views) -----------------

from taskyard.cli import task_views  # noqa: E402  (after the app it registers on)

app.command("info")(task_views.info)
app.command("list-files")(task_views.list_files)
app.command("tail")(task_views.tail)
app.command("top")(task_views.top)
