"""The ``taskyard`` command: one module per command group.

Command modules import only Typer at start; the SDK and Rich are imported inside the commands,
so that ``taskyard --help`` stays fast.
"""

from __future__ import annotations

import typer

from taskyard.cli import (
    exit_codes,
    flows,
    folders,
    groups,
    output,
    pools,
    run,
    secrets,
    server,
    sizes,
    tasks,
    users,
    workers,
)

app = typer.Typer(
    name="taskyard",
    help="Run script tasks on isolated, on-demand workers.",
    epilog=exit_codes.HELP,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    cls=output.CliGroup,
)
app.command("run")(run.run)
app.command("sizes")(sizes.sizes)
app.add_typer(tasks.app, name="tasks")
app.add_typer(workers.app, name="workers")
app.add_typer(pools.app, name="pools")
app.add_typer(users.app, name="users")
app.add_typer(groups.app, name="groups")
app.add_typer(secrets.app, name="secrets")
app.add_typer(server.app, name="server")
app.add_typer(folders.app, name="folders")
app.add_typer(flows.app, name="flow")


def main() -> None:
    app()
