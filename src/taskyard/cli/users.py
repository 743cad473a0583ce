"""``taskyard users``: add users (admins only), list them, and see who you are."""

from __future__ import annotations

from typing import Annotated

import typer

from taskyard.cli.output import local_time, note, print_table

app = typer.Typer(help="Add, list and remove users, change tokens, and see who you are.", no_args_is_help=True)

EXPIRES_HELP = "The token stops working after this long, e.g. 90d, 12h (default: never)."


@app.command()
def add(
    name: Annotated[str, typer.Argument(help="The new user's name: letters, digits, '.', '_' or '-'.")],
    admin: Annotated[bool, typer.Option("--admin", help="Let the user see everyone's tasks and add users.")] = False,
    expires: Annotated[str | None, typer.Option(help=EXPIRES_HELP)] = None,
) -> None:
    """Add a user and print their token (shown this once only; needs an admin)."""
    from taskyard.client import default_client

    client = default_client()
    user = client.add_user(name, is_admin=admin, expires_in=expires)
    typer.echo(user.token)
    note(f"user {user.name} added{' (admin)' if user.is_admin else ''}; this token is shown only once. Use it with:")
    note(f"  export TASKYARD_URL={client.url} TASKYARD_TOKEN={user.token}")


@app.command("list")
def list_users() -> None:
    """List users (needs an admin)."""
    from taskyard.client import default_client

    users = default_client().users()
    rows = [(user.name, "yes" if user.is_admin else "no", local_time(user.created_at)) for user in users]
    print_table(("NAME", "ADMIN", "CREATED"), rows, empty="no users")


@app.command()
def whoami() -> None:
    """Show the user your token belongs to, and the server it is for."""
    from taskyard.client import default_client

    client = default_client()
    user = client.me()
    typer.echo(f"{user.name}{' (admin)' if user.is_admin else ''} on {client.url}")


@app.command()
def remove(name: Annotated[str, typer.Argument(help="The user to remove.")]) -> None:
    """Remove a user (needs an admin): its token stops working at once; its tasks stay in the history."""
    from taskyard.client import default_client

    default_client().remove_user(name)
    note(f"user {name} removed")


@app.command("rotate-token")
def rotate_token(
    name: Annotated[str | None, typer.Argument(help="Whose token (default: your own; others need an admin).")] = None,
    expires: Annotated[str | None, typer.Option(help=EXPIRES_HELP)] = None,
) -> None:
    """Give a user a new token and print it (shown this once only); the old one stops working at once."""
    from taskyard.client import default_client

    client = default_client()
    user = client.rotate_token(name or client.me().name, expires_in=expires)
    typer.echo(user.token)
    note(f"the token of {user.name} was changed; the old one no longer works. This one is shown only once.")
