"""Shared fixtures: real control planes (SQLite and PostgreSQL) started as the embedded server is."""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from support import Server, default_client_of

pytest_plugins = ["gitserver"]  # a git HTTP server and repositories to clone (fixtures)

PG_ADMIN_URL = os.environ.get("TASKYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def _server(tmp_path_factory, name: str, db_url: str | None = None, **env: str) -> Iterator[Server]:
    server = Server(tmp_path_factory.mktemp(name), db_url, **env).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    yield from _fresh_pg_database("taskyard_test_")


@pytest.fixture
def fresh_pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test's own, empty."""
    yield from _fresh_pg_database("taskyard_own_")


@pytest.fixture(params=["sqlite", "postgres"])
def own_db(request) -> Iterator[str | None]:
    """None (SQLite in the server's home), or a PostgreSQL database of this test's own."""
    if request.param == "sqlite":
        yield None
    else:
        yield from _fresh_pg_database("taskyard_own_")


def _fresh_pg_database(prefix: str) -> Iterator[str]:
    try:
        import psycopg
    except ImportError:
        pytest.skip("psycopg is not installed (pip install -e '.[postgres]')")
    name = prefix + secrets.token_hex(4)
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
    with default_client_of(server, monkeypatch):
        yield server


@pytest.fixture
def readable_dir() -> Iterator[Path]:
    """A folder that sandboxed tasks can read (outside /tmp, which is private to each of them)."""
    folder = Path(tempfile.mkdtemp(prefix="taskyard-test-", dir="/var/tmp"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def cli(server, monkeypatch) -> Iterator[CliRunner]:
    """A runner whose commands talk to ``server`` as its admin, through TASKYARD_URL / TASKYARD_TOKEN."""
    with default_client_of(server, monkeypatch):
        yield CliRunner()
