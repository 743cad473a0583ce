"""``taskyard pools``: named groups of workers with their own limit, worker config and time limit."""

from __future__ import annotations

from typing import Annotated

import typer

from taskyard.cli.output import print_json, print_table

app = typer.Typer(help="Create, list and delete pools of workers.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="The pool name: letters, digits, '.', '_' or '-'.")]


@app.command()
def create(
    name: NameArg,
    max_workers: Annotated[int, typer.Option(min=0, help="Workers running tasks at once in this pool.")] = 1,
    ttl: Annotated[str | None, typer.Option("--ttl", help="Stop workers older than this, e.g. 8h.")] = None,
    size: Annotated[str | None, typer.Option(help="Default worker size for its tasks.")] = None,
    image: Annotated[str | None, typer.Option(help="Default worker image for its tasks.")] = None,
    warm: Annotated[int, typer.Option(min=0, help="Workers to keep started ahead of need.")] = 0,
    share: Annotated[
        list[str] | None,
        typer.Option(help="A user who may use it, or group:NAME for a group's members (repeat it); '*': everyone."),
    ] = None,
    backend: Annotated[str, typer.Option(help="The backend its workers start on (one the server names).")] = "local",
) -> None:
    """Create a pool (admins only); its users send tasks to it with `taskyard run --pool NAME`."""
    from taskyard.cli.run import worker_config
    from taskyard.sdk import Pool

    config = worker_config(size, image, {})
    Pool.create(
        name, max_workers=max_workers, time_to_live=ttl, worker_config=config, warm_workers=warm, shared_with=share,
        backend=backend,
    )
    typer.echo(f"pool {name} created")


@app.command("list")
def list_pools(as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False) -> None:
    """List pools with their limits, busy workers and queued tasks."""
    from taskyard.client import default_client

    pools = default_client().pools()
    if as_json:
        print_json([pool.model_dump(mode="json") for pool in pools])
        return
    columns = ("NAME", "BACKEND", "MAX WORKERS", "BUSY", "QUEUED", "TTL", "SIZE", "SHARED WITH", "BACKEND STATUS")
    rows = [
        (
            p.name,
            p.backend,
            p.max_workers,
            p.busy_workers,
            p.queued_tasks,
            _ttl(p.time_to_live),
            p.worker_config.worker_size,
            ", ".join(p.shared_with) or ("everyone" if p.name == "default" else "admins"),
            p.backend_fault or "ok",
        )
        for p in pools
    ]
    print_table(columns, rows, empty="no pools")


def _ttl(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:g} s"


@app.command()
def delete(name: NameArg) -> None:
    """Delete a pool: its queued tasks end Machine Terminated in Queue and its workers stop."""
    from taskyard.client import default_client

    default_client().delete_pool(name)
    typer.echo(f"pool {name} deleted")
