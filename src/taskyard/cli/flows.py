"""``taskyard flow``: run a flow of tasks on the control plane, watch it, read it, kill and rerun it."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from taskyard.cli.output import duration, local_time, note, print_fields, print_json, print_table

if TYPE_CHECKING:
    from taskyard.workflows.models import FlowInfo, FlowStatus
    from taskyard.workflows.runs import FlowRun

app = typer.Typer(help="Run flows of tasks (DAGs), follow, inspect, kill and rerun them.", no_args_is_help=True)

SUCCESS, FAILED, OTHER_END = 0, 1, 3
RunIdArg = Annotated[str, typer.Argument(help="The flow run id (as `flow run` or `flow list` shows it).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the API's JSON instead of a table.")]
FolderArg = Annotated[
    Path, typer.Argument(help="The folder of task files (and their *_worker.json).", exists=True, file_okay=False)
]
FlowOpt = Annotated[str, typer.Option("--flow", help='The flow, e.g. "[task_1, task_2] >> task_3".')]
DetachOpt = Annotated[bool, typer.Option("--detach", help="Print the run id and return at once; the run goes on.")]
COLORS = {"Success": "green", "Failed": "red", "Upstream Failed": "red", "Killed": "red", "Cancelled": "yellow",
          "Waiting": "dim", "In Progress": "cyan"}
TASK_COLUMNS = ("TASK", "STATE", "ATTEMPT", "UPSTREAM", "TASK ID", "STARTED", "DURATION", "REASON")


@app.command("run")
def run_flow(
    folder: FolderArg,
    flow: FlowOpt,
    max_parallel: Annotated[int | None, typer.Option(min=1, help="Run at most this many tasks at once.")] = None,
    retries: Annotated[int, typer.Option(min=0, help="Try each task this many more times if it fails.")] = 0,
    detach: DetachOpt = False,
) -> None:
    """Run a flow: independent tasks in parallel, each after all its upstream tasks succeeded."""
    from taskyard.workflows.runs import run

    started = run(folder, flow, max_parallel=max_parallel, retries=retries)
    if detach:
        typer.echo(started.id)
        return
    note(f"flow run {started.id} (it goes on if you stop watching: `taskyard flow show {started.id}`)")
    _exit(watch(started))


def watch(flow: FlowRun) -> FlowStatus:
    """Show the run's DAG, live, until the run ends; then print its tasks."""
    from rich.console import Console
    from rich.live import Live

    console = Console(stderr=True)
    info = flow.last_info
    if console.is_terminal:
        with Live(dag_view(info), console=console, refresh_per_second=4) as live:
            for info in flow.follow():
                live.update(dag_view(info))
    else:
        info = _plain_follow(flow)
    print_table(TASK_COLUMNS, [_task_row(task) for task in info.tasks])
    note(f"flow run {info.id}: {info.alias}" + (f" ({info.reason})" if info.reason else ""))
    return info.status


def _plain_follow(flow: FlowRun) -> FlowInfo:
    """Without a terminal: one line each time a task changes state."""
    seen: dict[str, str] = {}
    info = flow.last_info
    for info in flow.follow():
        for task in info.tasks:
            if seen.get(task.name) != task.state:
                seen[task.name] = task.state
                note(f"{task.name}: {task.state}")
    return info


def dag_view(info: FlowInfo):
    """The DAG as columns of tasks, each column one step further from the first tasks."""
    from rich.table import Table
    from rich.text import Text

    levels = _levels(info)
    table = Table(title=f"flow run {info.id}: {info.alias}", show_edge=False, header_style="bold")
    for level in range(max(levels.values(), default=0) + 1):
        table.add_column("first" if level == 0 else f"then ({level})")
    columns: list[list] = [[] for _ in table.columns]
    for task in info.tasks:
        label = Text(f"● {task.name}  ", style=COLORS.get(task.state, "cyan"))
        label.append(task.state + (f" (attempt {task.attempt})" if task.attempt > 1 else ""))
        columns[levels[task.name]].append(label)
    for row in range(max((len(column) for column in columns), default=0)):
        table.add_row(*(column[row] if row < len(column) else Text("") for column in columns))
    return table


def _levels(info: FlowInfo) -> dict[str, int]:
    upstream = {task.name: task.upstream for task in info.tasks}
    levels: dict[str, int] = {}

    def level(name: str) -> int:
        if name not in levels:
            levels[name] = 1 + max((level(up) for up in upstream[name]), default=-1)
        return levels[name]

    for name in upstream:
        level(name)
    return levels


def _task_row(task) -> tuple:
    ran = duration(task.started_at, task.finished_at) if task.started_at else "-"
    reused = " (reused)" if task.reused else ""
    return (task.name, task.state + reused, task.attempt, ", ".join(task.upstream), task.task_id,
            local_time(task.started_at), ran, task.reason)


def _exit(status: FlowStatus) -> None:
    from taskyard.workflows.models import FlowStatus

    if status is FlowStatus.SUCCESS:
        return
    raise typer.Exit(FAILED if status is FlowStatus.FAILED else OTHER_END)


@app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option(min=1, max=500, help="Show at most this many runs.")] = 20,
    as_json: JsonOpt = False,
) -> None:
    """List flow runs, newest first."""
    from taskyard.client import default_client
    from taskyard.workflows.runs import FlowClient

    runs = FlowClient(default_client()).list(limit)
    if as_json:
        print_json([run.model_dump(mode="json") for run in runs])
        return
    rows = [(run.id, run.alias, run.dag_flow.replace("\n", "; "), _counts(run), local_time(run.created_at),
             duration(run.created_at, run.finished_at)) for run in runs]
    print_table(("ID", "STATUS", "FLOW", "TASKS", "CREATED", "DURATION"), rows, empty="no flow runs")


def _counts(info: FlowInfo) -> str:
    done = sum(task.state == "Success" for task in info.tasks)
    return f"{done}/{len(info.tasks)} succeeded"


@app.command()
def show(
    run_id: RunIdArg,
    as_json: JsonOpt = False,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Watch the run until it ends.")] = False,
) -> None:
    """Show a flow run: each task's state, attempt and times."""
    from taskyard.workflows.runs import FlowRun

    flow = FlowRun(run_id)
    if follow:
        _exit(watch(flow))
        return
    info = flow.last_info
    if as_json:
        typer.echo(info.model_dump_json(indent=2))
        return
    print_fields([("ID", info.id), ("STATUS", info.alias), ("REASON", info.reason), ("FLOW", info.dag_flow),
                  ("USER", info.user), ("RERUN OF", info.rerun_of), ("CREATED", local_time(info.created_at)),
                  ("DURATION", duration(info.created_at, info.finished_at))])
    typer.echo()
    print_table(TASK_COLUMNS, [_task_row(task) for task in info.tasks])


@app.command()
def logs(run_id: RunIdArg, task: Annotated[str, typer.Argument(help="The task's name in the flow.")]) -> None:
    """Print what a task of the run has printed (its latest attempt)."""
    from taskyard.errors import NotFound
    from taskyard.workflows.runs import FlowRun

    started = FlowRun(run_id).tasks
    if task not in started:
        raise NotFound(f"task {task!r} of flow run {run_id} has not started (started: {', '.join(started) or 'none'})")
    sys.stdout.write(started[task].logs())
    sys.stdout.flush()


@app.command()
def kill(
    run_id: RunIdArg,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until its tasks have stopped.")] = True,
) -> None:
    """Kill a flow run: its running tasks are killed, the others cancelled."""
    from taskyard.workflows.runs import FlowRun

    typer.echo(FlowRun(run_id).kill(wait=wait).alias)


@app.command()
def rerun(run_id: RunIdArg, detach: DetachOpt = False) -> None:
    """Run again only what did not succeed in a run, reusing the results of what did."""
    from taskyard.workflows.runs import FlowRun

    again = FlowRun(run_id).rerun()
    if detach:
        typer.echo(again.id)
        return
    note(f"flow run {again.id}, rerunning {run_id}")
    _exit(watch(again))


@app.command()
def generate(
    folder: FolderArg,
    dag_key: Annotated[str, typer.Option("--dag-key", help="The DAG's key: its dag_id is <dag_key>.<username>.")],
    flow: FlowOpt,
    out: Annotated[Path, typer.Option("--out", help="The DAG folder to write (copy it to Airflow's dags folder).",
                                      file_okay=False)],
    schedule: Annotated[str | None, typer.Option(help="A cron expression or preset (default: by hand only).")] = None,
    retries: Annotated[int, typer.Option(min=0, help="Airflow's retries for each task.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace the DAG files already there.")] = False,
) -> None:
    """Write an Apache Airflow 3 DAG folder for a flow: <dag_key>_dag.py, the task files, their worker JSON."""
    from taskyard.errors import Conflict
    from taskyard.workflows.airflow import DagFilesExist, generate_files

    try:
        dag_file = generate_files(dag_key, flow, folder, schedule_interval=schedule, retries=retries,
                                  overwrite_existing=overwrite, output_path=out)
    except DagFilesExist as exc:
        raise Conflict(f"{', '.join(exc.names)} already in {exc.folder}; --overwrite replaces them") from None
    typer.echo(dag_file)
