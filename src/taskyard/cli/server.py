"""``taskyard server``: run the control plane in the foreground, or see and stop the embedded one."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from taskyard import settings

app = typer.Typer(help="Run the control plane, or manage the embedded one.", invoke_without_command=True)


@app.callback()
def serve(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Address to listen on; 0.0.0.0 exposes it to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on (0 picks a free one).")] = 8642,
    config_file: Annotated[
        Path | None,
        typer.Option("--config", help="The server's TOML configuration file (or TASKYARD_CONFIG).", show_default=False),
    ] = None,
    db_url: Annotated[
        str | None,
        typer.Option(help="Database URL (default: SQLite under TASKYARD_HOME; or TASKYARD_DB_URL)."),
    ] = None,
    home: Annotated[Path | None, typer.Option(help="State folder (default: TASKYARD_HOME or ~/.taskyard).")] = None,
    max_workers: Annotated[int | None, typer.Option(help="Workers running at once (default: cores).")] = None,
    admin_token_file: Annotated[
        Path | None,
        typer.Option(help="A file holding the admin token (or TASKYARD_ADMIN_TOKEN); default: made, shown once."),
    ] = None,
    embedded_mode: Annotated[bool, typer.Option("--embedded", hidden=True)] = False,
) -> None:
    """Run the control plane in the foreground (Ctrl+C stops it).

    The configuration is read at start: the --config file, then TASKYARD_* variables, then these
    options; a mistake in it stops the server with a message naming the key (exit code 2).
    """
    if ctx.invoked_subcommand is not None:
        return
    from taskyard import embedded
    from taskyard.server.config import load_config
    from taskyard.server.run import serve as run_server

    data_dir = home or settings.home()
    token = embedded.read_token(data_dir) if embedded_mode else given_admin_token(admin_token_file)
    config = load_config(config_file, data_dir=data_dir, db_url=db_url, max_workers=max_workers, admin_token=token)
    state_file = None
    if embedded_mode:
        state_file, port = embedded.state_path(data_dir), embedded.saved_port(data_dir)
    run_server(config, host=host, port=port, state_file=state_file, any_port=embedded_mode)


def given_admin_token(path: Path | None) -> str | None:
    """The admin token from ``path``, else ``TASKYARD_ADMIN_TOKEN``; None: the server makes one on first start."""
    from taskyard.errors import ConfigError

    if path is None:
        token = settings.admin_token()
    else:
        try:
            token = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"--admin-token-file: cannot read {path}: {exc.strerror}") from None
    if token is not None and len(token) < 16:
        raise ConfigError("the admin token must be at least 16 characters (e.g. made by: openssl rand -hex 32)")
    return token


@app.command()
def status() -> None:
    """Show whether the embedded server is running."""
    from taskyard import embedded

    state = embedded.status()
    if state is None:
        typer.echo(f"the embedded server is not running (home: {settings.home()})")
        from taskyard.cli.exit_codes import ExitCode

        raise typer.Exit(ExitCode.UNREACHABLE)
    typer.echo(f"the embedded server is running at {state['url']} (pid {state['pid']}, home: {settings.home()})")


@app.command()
def stop() -> None:
    """Stop the embedded server. Workers it started finish their tasks and report on its next start."""
    from taskyard import embedded

    if embedded.stop():
        typer.echo("the embedded server has stopped")
    else:
        typer.echo("the embedded server was not running")
