"""Shared fixtures: real control planes (SQLite and PostgreSQL) started as the embedded server is."""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskyard import embedded
from taskyard.client import Client, reset_default_client

PG_ADMIN_URL = os.environ.get("TASKYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


class Server:
    """A control plane in its own process and home folder, started through the embedded path."""

    def __init__(self, home: Path, db_url: str | None = None, **env: str) -> None:
        self.home = home
        self.env = {"TASKYARD_HOME": str(home), "TASKYARD_HEARTBEAT_TIMEOUT": "3", **env}
        if db_url:
            self.env["TASKYARD_DB_URL"] = db_url
        self.url = self.token = ""
        self.pid = 0
        self.client: Client | None = None
        self._extra_clients: list[Client] = []

    def start(self) -> Server:
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            self.url, self.token = embedded.ensure_running(self.home)
        finally:
            for key, value in saved.items():
                os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
        self.pid = embedded.status(self.home)["pid"]
        self.client = Client(self.url, self.token)
        return self

    def stop(self) -> None:
        """Stop the control plane, then every worker process it left running (tests only)."""
        embedded.stop(self.home)
        self._close()
        _kill_processes_under(self.home / "workers")

    def kill9(self) -> None:
        """Kill the control plane without warning (its workers go on)."""
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while embedded.status(self.home) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        self._close()

    def _close(self) -> None:
        for client in [self.client, *self._extra_clients]:
            if client is not None:
                client.close()
        self.client, self._extra_clients = None, []

    def user_client(self, name: str) -> Client:
        """A client for a new (non-admin) user called ``name``."""
        client = Client(self.url, self.client.add_user(name).token)
        self._extra_clients.append(client)
        return client


def _kill_processes_under(folder: Path) -> None:
    """SIGKILL every process whose TASKYARD_WORKER_DIR lies in ``folder`` (agents and their tasks)."""
    marker = f"TASKYARD_WORKER_DIR={folder}/".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(item.startswith(marker) for item in environ.split(b"\0")):
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)


def _server(tmp_path_factory, name: str, db_url: str | None = None, **env: str) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp(name), db_url, **env).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[postgres]')")
    name = "taskyard_test_" + secrets.token_hex(4)
    try:
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")
    admin.execute(f'CREATE DATABASE "{name}"')
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Iterator[Server]:
    """One SQLite control plane shared by the tests that do not stop it."""
    yield from _server(tmp_path_factory, "sqlite")


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory, pg_url) -> Iterator[Server]:
    yield from _server(tmp_path_factory, "postgres", pg_url)


@pytest.fixture(params=["sqlite", "postgres"])
def any_server(request) -> Server:
    """Each test using this runs on SQLite and on PostgreSQL."""
    return request.getfixturevalue("server" if request.param == "sqlite" else "pg_server")


@pytest.fixture
def fresh_server(tmp_path) -> Iterator[Server]:
    """A control plane of this test's own, for tests that stop or kill it."""
    server = Server(tmp_path / "home").start()
    yield server
    server.stop()


@pytest.fixture
def sdk_env(server, monkeypatch) -> Iterator[Server]:
    """Point the SDK's default client (``taskyard.run_task`` with no client) at ``server``."""
    monkeypatch.setenv("TASKYARD_URL", server.url)
    monkeypatch.setenv("TASKYARD_TOKEN", server.token)
    reset_default_client()
    yield server
    reset_default_client()
