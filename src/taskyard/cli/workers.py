"""``taskyard workers``: list workers, terminate one, read what its tasks printed."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from taskyard.cli.output import local_time, print_json, print_table

if TYPE_CHECKING:
    from taskyard.models import WorkerInfo

app = typer.Typer(help="List workers, terminate them, read their logs, get into kept ones.", no_args_is_help=True)

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


@app.command("exec")
def exec_command(
    name: NameArg,
    command: Annotated[list[str], typer.Argument(help="The command and its arguments (after --).")],
    timeout: Annotated[float, typer.Option("--timeout", min=1, help="Stop the command after this many seconds.")] = 60,
    pass_stdin: Annotated[bool, typer.Option("--stdin", "-i", help="Pass standard input to the command.")] = False,
) -> None:
    """Run one command in a kept worker, where its task ran (folder, environment, sandbox); exit with its code."""
    from taskyard.sdk import Worker

    stdin = sys.stdin.read() if pass_stdin else None
    result = Worker(name).exec(*command, stdin=stdin, timeout=timeout)
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    if result.timed_out:
        typer.echo(f"taskyard: the command ran longer than {timeout:g} s and was stopped", err=True)
    raise typer.Exit(_exit_status(result.exit_code))


def _exit_status(code: int | None) -> int:
    """A shell's exit status for a process's exit code (killed by signal N: 128 + N)."""
    if code is None:
        return 1
    return 128 - code if code < 0 else code


@app.command()
def shell(name: NameArg) -> None:
    """Open an interactive shell in a kept worker, where its task ran (folder, environment, sandbox).

    The shell is reached on the worker's host: run this where the worker runs (the local backend)."""
    from taskyard.cli import shell as remote
    from taskyard.client import default_client

    tty = sys.stdin.isatty() and sys.stdout.isatty()
    door = default_client().open_shell(name, tty=tty)
    with remote.connect(door.address, door.key) as conn:
        code = remote.relay(conn, tty)
    raise typer.Exit(code)
