"""``taskyard run``: submit a script task and follow it to its end."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from taskyard.cli.output import duration, note

if TYPE_CHECKING:
    from taskyard.config import WorkerConfig
    from taskyard.models import TaskInfo
    from taskyard.sdk import Task
    from taskyard.status import TaskStatus

from taskyard.cli.exit_codes import ExitCode, for_status

FAILED, OTHER_END = ExitCode.FAILED, ExitCode.OTHER_END

FileArg = Annotated[
    str, typer.Argument(help="The script to run (.py, .sh or .ipynb), relative to --files.", show_default=False)
]
FilesOpt = Annotated[
    Path | None,
    typer.Option(
        "--files",
        help="Folder uploaded with the task; the script runs inside it (default: the current folder).",
        exists=True,
        file_okay=False,
        show_default=False,
    ),
]
SizeOpt = Annotated[
    str | None, typer.Option(help="Worker size, e.g. X-Small or Large; `taskyard sizes` lists the server's.")
]
ImageOpt = Annotated[str | None, typer.Option(help="Worker image, e.g. python or practicus.")]
EnvOpt = Annotated[
    list[str] | None,
    typer.Option("--env", "-e", metavar="KEY=VALUE", help="An environment variable for the task; repeat for more."),
]
KeepOpt = Annotated[bool, typer.Option("--keep-worker", help="Keep the worker after the task, to inspect or reuse it.")]
DetachOpt = Annotated[bool, typer.Option("--detach", help="Print the task id and return at once; the task goes on.")]
TaskIdOpt = Annotated[
    str | None, typer.Option("--task-id", help="Your own id for the task; the same id again re-attaches to it.")
]
NoCaptureOpt = Annotated[
    bool,
    typer.Option(
        "--no-capture",
        help="Keep the task's output out of its log (nothing to stream); "
        "`taskyard workers logs NAME` shows it while the worker lives.",
    ),
]
TtlOpt = Annotated[
    str | None, typer.Option("--ttl", help="Stop the task if it runs longer, e.g. 90, 45s, 1h30m (Task Timed Out).")
]
PoolOpt = Annotated[str | None, typer.Option("--pool", help="Run in this pool of workers (default: the default pool).")]
RetriesOpt = Annotated[int, typer.Option("--retries", min=0, help="Run again on a fresh worker if the worker is lost.")]
VenvOpt = Annotated[
    str | None, typer.Option("--venv", help="Run with this virtual environment of the worker's host (~/.venv/NAME).")
]
RequirementsOpt = Annotated[
    Path | None,
    typer.Option(
        "--requirements",
        help="A requirements file (read here): the task runs in an environment built from it, cached for later tasks.",
        exists=True,
        dir_okay=False,
        show_default=False,
    ),
]
ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="A WorkerConfig JSON file (e.g. task_worker.json); --size, --image, -e and --requirements go on top. "
        "Without it, a <task>_worker.json or default_worker.json beside the script is used.",
        exists=True,
        dir_okay=False,
        show_default=False,
    ),
]
ParameterOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--parameter",
        "-p",
        metavar="NAME=VALUE",
        help="A notebook parameter; VALUE is read as JSON when it parses, else as a string. Repeat for more.",
        show_default=False,
    ),
]
CellTimeoutOpt = Annotated[
    str | None, typer.Option("--cell-timeout", help="Stop a notebook whose cell runs longer, e.g. 60, 5m.")
]

CallbackOpt = Annotated[
    str | None, typer.Option("--callback", metavar="URL", help="POST the task's result to this URL when it ends.")
]
CallbackTokenOpt = Annotated[
    str | None,
    typer.Option(
        "--callback-token-env",
        metavar="VARIABLE",
        help="Send the value of this environment variable as the callback's bearer token.",
    ),
]


def callback_token(variable: str | None) -> str | None:
    """The callback token from the variable named (a token never goes on the command line)."""
    if variable is None:
        return None
    value = os.environ.get(variable)
    if not value:
        raise typer.BadParameter(f"environment variable {variable} is not set", param_hint="--callback-token-env")
    return value

AsNotebookOpt = Annotated[
    bool, typer.Option("--as-notebook", help="Run a .py in jupytext's percent format (# %% cells) as a notebook.")
]


def run(
    file: FileArg,
    files: FilesOpt = None,
    size: SizeOpt = None,
    image: ImageOpt = None,
    env: EnvOpt = None,
    keep_worker: KeepOpt = False,
    detach: DetachOpt = False,
    task_id: TaskIdOpt = None,
    no_capture: NoCaptureOpt = False,
    ttl: TtlOpt = None,
    pool: PoolOpt = None,
    retries: RetriesOpt = 0,
    venv: VenvOpt = None,
    requirements: RequirementsOpt = None,
    config_file: ConfigOpt = None,
    parameter: ParameterOpt = None,
    cell_timeout: CellTimeoutOpt = None,
    callback: CallbackOpt = None,
    callback_token_env: CallbackTokenOpt = None,
    as_notebook: AsNotebookOpt = False,
) -> None:
    """Run a script task on a fresh worker and stream its output.

    [bold]Exit codes[/]
    0    Success
    1    Failed (the script exited non-zero)
    2    bad usage or input, incl. a folder over the server's upload limit
    3    any other end: Killed, Runtime Error, Task Timed Out...
    4    the server could not be reached or refused the token
    5    not found
    130  Ctrl+C: you stopped following; the task goes on
    """
    from taskyard.sdk import submit

    config = worker_config(size, image, parse_env(env or []), requirement_lines(requirements), config_file)
    task = submit(
        file,
        files,
        config,
        task_id=task_id,
        terminate_on_completion=not keep_worker,
        capture_task_output=not no_capture,
        time_to_live=ttl,
        pool=pool,
        max_retries=retries,
        python_venv_name=venv,
        parameters=parse_parameters(parameter or []) or None,
        execution_timeout=cell_timeout,
        callback_url=callback,
        callback_url_token=callback_token(callback_token_env),
        as_notebook=as_notebook,
    )
    note_embedded_start()
    if detach:
        typer.echo(task.id)
        return
    follow_to_the_end(task, keep_worker, uncaptured=no_capture)


def note_embedded_start() -> None:
    """Say so when this command started the embedded server, and how to stop it."""
    from taskyard import embedded

    started = embedded.started_here()
    if started is not None:
        note(
            f"started the embedded taskyard server at {started['url']} (home {started['home']}); it keeps "
            "running in the background for later commands. Stop it with: taskyard server stop"
        )


def follow_to_the_end(task: Task, keep_worker: bool, *, uncaptured: bool = False) -> NoReturn:
    """Stream the task's output, print a summary line and exit with the code for its final status."""
    from taskyard.cli.follow import follow

    status = follow(task)
    info = task.refresh()
    note(summary(info, keep_worker))
    if uncaptured and info.worker_name:
        where = "it lives" if keep_worker else "it lives (--keep-worker keeps it)"
        note(f"its output is in its worker's log: taskyard workers logs {info.worker_name}, while {where}")
    raise typer.Exit(exit_code(status))


def parse_env(values: list[str]) -> dict[str, str]:
    """``["A=1", "B=x=y"]`` -> ``{"A": "1", "B": "x=y"}``; a value without ``=`` is a usage error."""
    env: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{value!r} is not KEY=VALUE", param_hint="'-e' / '--env'")
        env[name] = text
    return env


def parse_parameters(values: list[str]) -> dict:
    """``["n=3", "name=abc"]`` -> ``{"n": 3, "name": "abc"}``: a value is JSON when it parses, else a string;
    a value without ``=`` is a usage error."""
    import json

    parameters: dict = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not sep or not name:
            raise typer.BadParameter(f"{value!r} is not NAME=VALUE", param_hint="'-p' / '--parameter'")
        try:
            parameters[name] = json.loads(text)
        except json.JSONDecodeError:
            parameters[name] = text
    return parameters


def requirement_lines(path: Path | None) -> list[str] | None:
    """The lines of a local requirements file (sent with the task, wherever the file is); None without one."""
    if path is None:
        return None
    from taskyard.agent.envs import normalize

    return normalize(path.read_text(encoding="utf-8").splitlines())


def worker_config(
    size: str | None,
    image: str | None,
    env: dict[str, str],
    requirements: list[str] | None = None,
    config_file: Path | None = None,
) -> WorkerConfig | None:
    """The worker config from ``config_file`` and the options on top (env variables merged).

    None when neither is given, so that the SDK looks for a worker JSON beside the task.
    Pydantic checks the result; its errors exit with code 2.
    """
    from taskyard.config import WorkerConfig

    base = _fields(WorkerConfig.from_file(config_file)) if config_file is not None else {}
    given = {
        "worker_size": size,
        "worker_image": image,
        "python_requirements": requirements,
        "env_variables": {**(base.get("env_variables") or {}), **env} or None,
    }
    fields = {**base, **{key: value for key, value in given.items() if value is not None}}
    return WorkerConfig.model_validate(fields) if fields else None


def _fields(config: WorkerConfig) -> dict:
    """The fields given in ``config`` (not the packed ``additional_params``), None ones left out."""
    values = {name: getattr(config, name) for name in type(config).model_fields if name != "additional_params"}
    return {name: value for name, value in values.items() if value is not None}


def exit_code(status: TaskStatus) -> int:
    return for_status(status)


def summary(info: TaskInfo, keep_worker: bool) -> str:
    """One line: the task, how it ended, how long it ran, where; and how to stop a kept worker."""
    line = f"task {info.id}: {info.alias}"
    if exit_code(info.status) == FAILED and info.exit_code is not None:
        line += f" (exit code {info.exit_code})"
    elif info.reason and exit_code(info.status) == OTHER_END:
        line += f" ({info.reason})"
    if info.started_at is not None:
        line += f", ran {duration(info.started_at, info.finished_at)}"
    if info.worker_name:
        line += f", worker {info.worker_name}"
    if keep_worker and info.worker_name:
        line += f"; the worker stays up, stop it with: taskyard workers terminate {info.worker_name}"
    return line
