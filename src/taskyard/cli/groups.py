"""``taskyard groups``: groups of users (admins make and fill them); share a pool with one as ``group:NAME``."""

from __future__ import annotations

from typing import Annotated

import typer

from taskyard.cli.output import local_time, note, print_table

app = typer.Typer(
    help="Create, list and delete groups of users, and add or remove their members. "
    "A pool shared with group:NAME is usable by the group's members.",
    no_args_is_help=True,
)

GroupArg = Annotated[str, typer.Argument(help="The group name: letters, digits, '.', '_' or '-'.")]
UsersArg = Annotated[list[str], typer.Argument(help="One or more user names.")]


@app.command()
def create(name: GroupArg) -> None:
    """Create an empty group (needs an admin)."""
    from taskyard.client import default_client

    default_client().create_group(name)
    note(
        f"group {name} created; add users with `taskyard groups add {name} USER`, then share a pool with"
        f" `taskyard pools create POOL --share group:{name}`"
    )


@app.command("list")
def list_groups() -> None:
    """List groups and their members (an admin sees every group; anyone else their own)."""
    from taskyard.client import default_client

    groups = default_client().groups()
    rows = [(group.name, ", ".join(group.members) or "-", local_time(group.created_at)) for group in groups]
    print_table(("NAME", "MEMBERS", "CREATED"), rows, empty="no groups")


@app.command()
def add(name: GroupArg, users: UsersArg) -> None:
    """Put users in a group (needs an admin); they may use the pools shared with it at once."""
    from taskyard.client import default_client

    client = default_client()
    for user in users:
        client.add_to_group(name, user)
    note(f"added to group {name}: {', '.join(users)}")


@app.command()
def remove(name: GroupArg, users: UsersArg) -> None:
    """Take users out of a group (needs an admin); the pools shared with it are no longer theirs, at once."""
    from taskyard.client import default_client

    client = default_client()
    for user in users:
        client.remove_from_group(name, user)
    note(f"removed from group {name}: {', '.join(users)}")


@app.command()
def delete(name: GroupArg) -> None:
    """Delete a group (needs an admin): its members lose the pools shared with it, and those pools forget it."""
    from taskyard.client import default_client

    default_client().delete_group(name)
    note(f"group {name} deleted")
