"""``taskyard folders``: task folders pushed by name, for Task Runner requests (``"files": NAME``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taskyard.cli.output import local_time, print_table

app = typer.Typer(help="Push and list task folders that Task Runner requests name in 'files'.", no_args_is_help=True)


@app.command()
def push(
    name: Annotated[str, typer.Argument(help="The folder's name: letters, digits, '.', '_' or '-'.")],
    directory: Annotated[Path, typer.Argument(help="The folder to pack and push.", file_okay=False, exists=True)],
) -> None:
    """Pack DIRECTORY and store it on the server as NAME (a later push replaces it)."""
    from taskyard.client import default_client

    info = default_client().push_folder(name, directory)
    typer.echo(f"pushed {directory} as folder {info.name} ({info.bundle_size} bytes, {info.bundle_sha256[:12]})")


@app.command("list")
def list_folders() -> None:
    """List the folders you have pushed."""
    from taskyard.client import default_client

    rows = [(f.name, f.bundle_sha256[:12], f.bundle_size, local_time(f.updated_at)) for f in default_client().folders()]
    print_table(("NAME", "BUNDLE", "BYTES", "PUSHED"), rows, empty="no folders")
