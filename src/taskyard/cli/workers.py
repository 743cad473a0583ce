"""``taskyard workers``: list workers, terminate one, read what its tasks printed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from taskyard.cli.output import local_time, print_json, print_table

if TYPE_CHECKING:
    from taskyard.models import WorkerInfo

app = typer.Typer(help="List workers, terminate them, read their logs.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="The worker name (as `workers list` shows it).")]
WORKER_COLUMNS = ("NAME", "STATUS", "SIZE", "IMAGE", "SANDBOXED", "TASK", "USER", "CREATED")


@app.command("list")
def list_workers(
    include_ended: Annotated[bool, typer.Option("--all", help="Include workers that have ended.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")] = False,
) -> None:
    """List live workers, newest first (with --all, ended ones too)."""
    from taskyard.client import default_client

    workers = default_client().workers(include_ended=include_ended)
    if as_json:
        print_json([worker.model_dump(mode="json") for worker in workers])
        return
    print_table(WORKER_COLUMNS, [_worker_row(worker) for worker in workers], empty="no workers")


def _worker_row(worker: WorkerInfo) -> tuple:
    sandboxed = {True: "yes", False: "NO", None: ""}[worker.sandboxed]
    size = f"{worker.size} (GPU {','.join(worker.gpus)})" if worker.gpus else worker.size
    cells = worker.name, worker.status.value, size, worker.image, sandboxed, worker.task_id, worker.user
    return (*cells, local_time(worker.created_at))


@app.command()
def terminate(name: NameArg) -> None:
    """Terminate a worker; a task still on it ends as Machine Terminated by User."""
    from taskyard.client import default_client

    info = default_client().terminate_worker(name)
    typer.echo(f"worker {info.name}: {info.status.value}")


@app.command()
def logs(
    name: NameArg,
    max_mb: Annotated[float, typer.Option("--max-mb", min=0.001, help="Print at most the last this many MB.")] = 1,
) -> None:
    """Print what the tasks on a worker printed, oldest first; then, while it lives, its own log
    (output of tasks run with --no-capture / capture_task_output=False)."""
    from taskyard.sdk import Worker

    sys.stdout.write(Worker(name).get_logs(log_size_mb=max_mb))
    sys.stdout.flush()
