"""Engines and sessions for SQLite and PostgreSQL, and the schema migrations that run at start."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"


def make_engine(url: str) -> Engine:
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    engine = create_engine(url, pool_size=10, max_overflow=20)
    _ping_when_idle(engine)
    return engine


IDLE_PING = 1.0  # seconds a pooled connection may sit unused before it is checked at its next checkout


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection with a ``SELECT 1`` when it comes out after more than :data:`IDLE_PING`
    unused, and replace it if that fails (the database restarted, a proxy closed it). A ping at every
    checkout (``pool_pre_ping``) costs a round trip per transaction; one a second has been in use since."""

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection, record) -> None:
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection, record, _proxy) -> None:
        if time.monotonic() - record.info.get("idle_since", time.monotonic()) <= IDLE_PING:
            return
        try:
            with dbapi_connection.cursor() as cursor:
                cursor.execute("SELECT 1")
            dbapi_connection.rollback()  # leave it outside any transaction, as it came
        except Exception as exc:  # any failure: the pool drops it and connects anew
            raise DisconnectionError(str(exc)) from exc


READ_ONLY = "taskyard_read_only"  # the execution option of a read transaction's connection


def _sqlite_engine(url: str) -> Engine:
    # Readers run side by side (WAL): the pool holds enough connections for the threads that serve requests.
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30}, pool_size=8, max_overflow=40
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=30000"):
            dbapi_connection.execute(f"PRAGMA {pragma}")

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        # Take the write lock up front: a deferred transaction that later writes can fail at once
        # with "database is locked" instead of waiting for the busy timeout. A read transaction
        # takes none: in WAL mode it reads its snapshot beside the writer.
        # On the driver's connection: through exec_driver_sql it cost as much as a statement of ours.
        begin = "BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE"
        conn.connection.driver_connection.execute(begin)

    return engine


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    # SQLite has one writer at a time, and its busy handler sleeps in growing steps (up to 100 ms)
    # while it waits. Within this process, a lock hands the database over at once instead.
    lock = threading.RLock() if engine.dialect.name == "sqlite" else None
    return sessionmaker(engine, expire_on_commit=False, info={"write_lock": lock})


@contextmanager
def transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A short unit of work: committed on success, rolled back on error. No network calls inside."""
    with sessions() as session:
        lock = session.info["write_lock"]
        with lock if lock is not None else nullcontext(), session.begin():
            yield session


@contextmanager
def read_transaction(sessions: sessionmaker[Session]) -> Iterator[Session]:
    """A unit of work that only reads: one snapshot, without the write lock or waiting for the writer.

    Nothing may be written in it (on SQLite a write would have to take the lock it skipped)."""
    with sessions() as session, session.begin():
        session.connection(execution_options={READ_ONLY: True})
        yield session


def migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision (idempotent)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
