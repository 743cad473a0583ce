"""PostgreSQL connections the pool kept while the database dropped them are replaced, not handed out broken.

The pool checks a connection (``SELECT 1``) only when it has sat unused for more than
``session.IDLE_PING`` seconds: a connection in steady use costs no extra round trip.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy import text

from taskyard.server.db import session as db_session
from taskyard.server.db.session import make_engine, make_sessionmaker, transaction

pytestmark = pytest.mark.postgres


def _backend_pid(sessions) -> int:
    with transaction(sessions) as session:
        return session.scalar(text("SELECT pg_backend_pid()"))


def _dropped_by_the_database(pg_admin, pid: int) -> None:
    pg_admin.execute("SELECT pg_terminate_backend(%s)", (pid,))


@pytest.fixture
def one_connection(pg_url):
    """Sessions used one after another: each gets the pool's one connection back."""
    engine = make_engine(pg_url)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_a_connection_dropped_while_idle_is_replaced_at_its_next_use(one_connection, pg_admin, monkeypatch):
    monkeypatch.setattr(db_session, "IDLE_PING", 0.05)
    first = _backend_pid(one_connection)
    _dropped_by_the_database(pg_admin, first)
    time.sleep(0.2)
    assert _backend_pid(one_connection) != first


def test_a_connection_in_steady_use_is_not_checked(one_connection, pg_admin, monkeypatch):
    """Within the idle time, the pool hands the connection out as it is: no ping found it dropped."""
    monkeypatch.setattr(db_session, "IDLE_PING", 60)
    first = _backend_pid(one_connection)
    _dropped_by_the_database(pg_admin, first)
    with pytest.raises(Exception, match="terminat|closed|connection"):
        _backend_pid(one_connection)
    assert _backend_pid(one_connection) != first  # the broken one was dropped by the pool, and a new one made
