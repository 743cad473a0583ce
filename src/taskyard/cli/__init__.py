"""The ``taskyard`` command: one module per command group."""

from __future__ import annotations

import typer

from taskyard.cli import server

app = typer.Typer(
    name="taskyard",
    help="Run script tasks on isolated, on-demand workers.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
app.add_typer(server.app, name="server")


def main() -> None:
    app()
