"""Run the control plane in the foreground: bind, start the scheduler, serve until stopped."""

from __future__ import annotations

import errno
import json
import os
import socket
from contextlib import asynccontextmanager
from pathlib import Path

import uvicorn

from taskyard.errors import ConfigError
from taskyard.server.advertise import WILDCARDS, agent_url
from taskyard.server.app import create_app
from taskyard.server.config import ServerConfig


def serve(
    config: ServerConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 8642,
    state_file: Path | None = None,
    any_port: bool = False,
) -> None:
    """Serve until SIGINT/SIGTERM. With ``any_port``, a busy ``port`` gives way to a free one."""
    os.umask(0o077)  # the database, logs, blobs and worker folders: this user's only
    try:
        sock = _bind(host, port)
    except OSError as exc:
        if not (any_port and exc.errno == errno.EADDRINUSE):
            raise
        sock = _bind(host, 0)
    bound = sock.getsockname()[1]
    try:
        agents_at = agent_url(config, host, bound)
    except ConfigError:
        sock.close()
        raise
    url = f"http://{'127.0.0.1' if host in WILDCARDS else host}:{bound}"  # for clients on this machine
    app = create_app(config)
    plane = app.state.plane
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a):
        plane.start(agents_at)
        if state_file is not None:
            _write_state(state_file, url)
        async with inner(a):
            yield
        if state_file is not None:
            state_file.unlink(missing_ok=True)

    app.router.lifespan_context = lifespan
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=75, timeout_graceful_shutdown=1)
    )
    _show_first_admin(app.state.first_admin_token)
    told = f"; workers call {agents_at}" if agents_at != url else ""
    print(f"taskyard server listening on {url}{told}", flush=True)
    server.run(sockets=[sock])


def _show_first_admin(token: str | None) -> None:
    """Tell the token of the admin made on this first start, once: it is stored only as a hash."""
    if token is not None:
        print("the database had no users: made the admin 'admin'; its token (shown this once only):", flush=True)
        print(f"  {token}", flush=True)
        print("  use it with: export TASKYARD_URL=<this server's URL> TASKYARD_TOKEN=<the token>", flush=True)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit this; without it, keep-alive requests wait ~40 ms on delayed ACKs.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(2048)
    return sock


def _write_state(path: Path, url: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
    os.replace(tmp, path)
    (path.parent / "port").write_text(url.rsplit(":", 1)[1])


__all__ = ["serve", "ServerConfig"]
