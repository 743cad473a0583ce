"""``taskyard secrets``: set, list and delete secrets in the vault, and rotate its key (admins)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from taskyard.cli.output import fail, local_time, note, print_json, print_table

app = typer.Typer(help="Set, list and delete secrets; tasks get them as environment variables.", no_args_is_help=True)

NameArg = Annotated[str, typer.Argument(help="The secret's name: letters, digits, '.', '_' or '-'.")]
SharedOpt = Annotated[bool, typer.Option("--shared", help="The shared one, readable by every user's tasks (admins).")]


@app.command("set")
def set_secret(
    name: NameArg,
    shared: SharedOpt = False,
    from_stdin: Annotated[
        bool, typer.Option("--from-stdin", help="Read the value from stdin (one trailing newline dropped).")
    ] = False,
) -> None:
    """Create or replace a secret; its value is asked for without echo (or read with --from-stdin)."""
    from taskyard.client import default_client

    value = _read_value(from_stdin)
    info = default_client().put_secret(name, value, shared=shared)
    typer.echo(f"{'shared ' if info.shared else ''}secret {info.name} set")


def _read_value(from_stdin: bool) -> str:
    if from_stdin:
        value = sys.stdin.read()
        return value[:-1] if value.endswith("\n") else value
    value = typer.prompt("Value", hide_input=True, confirmation_prompt=True)
    if not value:
        fail("the value is empty; nothing was stored", code=2)
    return value


@app.command("list")
def list_secrets(as_json: Annotated[bool, typer.Option("--json", help="Print the API's JSON.")] = False) -> None:
    """List your secrets and the shared ones: names and ages, never values."""
    from taskyard.client import default_client

    secrets = default_client().secrets()
    if as_json:
        print_json([secret.model_dump(mode="json") for secret in secrets])
        return
    rows = [
        (s.name, "shared" if s.shared else "personal", f"{s.age_days}d", local_time(s.updated_at)) for s in secrets
    ]
    print_table(("NAME", "SCOPE", "AGE", "UPDATED"), rows, empty="no secrets")


@app.command()
def delete(name: NameArg, shared: SharedOpt = False) -> None:
    """Delete a secret; tasks already given it keep their copy, tasks not yet started end Runtime Error."""
    from taskyard.client import default_client

    default_client().delete_secret(name, shared=shared)
    typer.echo(f"{'shared ' if shared else ''}secret {name} deleted")


@app.command("rotate-key")
def rotate_key() -> None:
    """Encrypt every secret under a new vault key, which then replaces the key file (admins)."""
    from taskyard.client import default_client

    rotation = default_client().rotate_vault_key()
    typer.echo(f"vault key rotated: {rotation.resealed} secrets encrypted again under key {rotation.key_id}")
    note("the old key is gone from the key file; a backup of the database needs the new one")
