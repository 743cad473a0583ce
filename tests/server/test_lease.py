"""One live server per SQLite database: a second refuses to start, and takes over once the first is gone.

On PostgreSQL servers are peers: a second one starts beside the first."""

from __future__ import annotations

import signal
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from taskyard.errors import Unauthorized
from taskyard.server.db.models import ServerLeaseRow, utcnow
from taskyard.server.db.session import make_engine, make_sessionmaker, transaction

from foreground import Foreground
from support import wait_for

HELD = r"another taskyard server \(\S+ pid \d+\) holds this database"


@pytest.fixture
def sqlite_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'taskyard.db'}"


@pytest.fixture
def servers(tmp_path, sqlite_url):
    """``servers(name)``: a foreground server on the test's database; every one is stopped at the end."""
    made: list[Foreground] = []

    def make(name: str, url: str | None = None) -> Foreground:
        made.append(Foreground(tmp_path / name, "--db-url", url or sqlite_url, env={"TASKYARD_WARM_WORKERS": "0"}))
        return made[-1]

    yield make
    for server in made:
        server.stop(signal.SIGKILL)


def test_a_second_server_on_a_held_database_refuses_to_start(servers):
    first = servers("one").start()
    with pytest.raises(RuntimeError, match=HELD):
        servers("two").start()
    assert first.client().me().is_admin  # the first one goes on
    first.stop(signal.SIGKILL)
    servers("three").start()  # its holder is gone from this host: taken over at once


def test_a_lease_of_a_holder_elsewhere_is_taken_over_once_it_lapses(servers, sqlite_url):
    first = servers("one").start()
    first.stop(signal.SIGKILL)
    lapses = utcnow() + timedelta(seconds=8)
    engine = make_engine(sqlite_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:  # as if it had run on another machine
            session.execute(update(ServerLeaseRow).values(description="elsewhere pid 1", expires_at=lapses))
    finally:
        engine.dispose()
    with pytest.raises(RuntimeError, match=r"another taskyard server \(elsewhere pid 1\)"):
        servers("two").start()
    time.sleep(max(0.0, (lapses - utcnow()).total_seconds()))
    servers("three").start()


def test_a_stopped_server_lets_go_of_the_database(servers, sqlite_url):
    servers("one").start().stop()
    engine = make_engine(sqlite_url)
    try:
        with transaction(make_sessionmaker(engine)) as session:
            assert session.get(ServerLeaseRow, "server") is None
    finally:
        engine.dispose()


def test_servers_on_one_postgresql_are_peers(servers, fresh_pg_url):
    first = servers("one", fresh_pg_url).start()
    second = servers("two", fresh_pg_url).start()
    admin = first.client()
    assert admin.me().is_admin
    assert second.client(first.token).me().is_admin  # one store: the first one's admin is known to the second


def test_a_token_rotated_on_one_server_stops_working_on_the_other_at_once(servers, fresh_pg_url):
    first = servers("one", fresh_pg_url).start()
    second = servers("two", fresh_pg_url).start()
    old = first.client().add_user("carol").token
    assert second.client(old).me().name == "carol"  # now in the second server's token cache
    new = first.client().rotate_token("carol").token
    started = time.monotonic()
    wait_for(lambda: _refused(second.client(old)), timeout=5)
    assert time.monotonic() - started < 3  # the cache holds a token for about a second, no longer
    assert second.client(new).me().name == "carol"


def _refused(client) -> bool:
    try:
        client.me()
    except Unauthorized:
        return True
    return False
