"""The store on both databases: a migrated, empty database per test, and small factories.

SQLite gets a file of its own in ``tmp_path``. PostgreSQL gets a schema of its own inside the
session's test database, reached through ``search_path``, so every test starts from an empty
database and ``migrate`` builds it from nothing, exactly as at a first start.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from taskyard.models import TaskSpec
from taskyard.server.config import builtin_sizes
from taskyard.server.db.models import TaskRow, UserRow
from taskyard.server.db.session import make_engine, make_sessionmaker, migrate, transaction
from taskyard.server.services import tasks, users

#: the worker images the tests' control plane knows (as the local backend does)
IMAGES = {"python": "this machine's Python", "practicus": "the same Python under another name"}


def fake_sha(seed: str = "bundle") -> str:
    """A well-formed bundle digest (64 lowercase hex digits) that names no real upload."""
    return hashlib.sha256(seed.encode()).hexdigest()


def task_spec(**fields) -> TaskSpec:
    """A valid TaskSpec for ``main.py`` with a fake bundle; ``fields`` override any part of it."""
    values = {"file_name": "main.py", "bundle_sha256": fake_sha(), "bundle_size": 123, **fields}
    return TaskSpec(**values)


@pytest.fixture(scope="session")
def pg_admin(pg_url):
    """An autocommit connection to the session's PostgreSQL database, to make and drop schemas."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as connection:
        yield connection


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request, tmp_path) -> Iterator[str]:
    """The URL of an empty database: a fresh SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'taskyard.db'}"
        return
    pg_url = request.getfixturevalue("pg_url")
    admin = request.getfixturevalue("pg_admin")
    schema = "t_" + secrets.token_hex(6)
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{pg_url}?options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


@pytest.fixture
def engine(db_url) -> Iterator[Engine]:
    engine = make_engine(db_url)
    try:
        migrate(engine)
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def db(engine) -> sessionmaker[Session]:
    """Sessions on a freshly migrated database (SQLite and PostgreSQL)."""
    return make_sessionmaker(engine)


@pytest.fixture
def make_spec() -> Callable[..., TaskSpec]:
    """``make_spec(**fields)``: a valid TaskSpec with a fake bundle digest."""
    return task_spec


@pytest.fixture
def make_user(db) -> Callable[..., UserRow]:
    """``make_user(name, is_admin=False)``: a user committed in a transaction of its own."""

    def make(name: str = "alice", *, is_admin: bool = False) -> UserRow:
        with transaction(db) as session:
            return users.create_user(session, name, is_admin=is_admin)[0]

    return make


@pytest.fixture
def submit(db) -> Callable[..., tuple[TaskRow, bool]]:
    """``submit(user, spec, bundle_present=True)``: ``create_task`` in a transaction of its own."""

    def run(user: UserRow, spec: TaskSpec, *, bundle_present: bool = True) -> tuple[TaskRow, bool]:
        with transaction(db) as session:
            return tasks.create_task(
                session, user, spec, bundle_present=bundle_present, images=IMAGES, sizes=builtin_sizes(), capacity=None
            )

    return run


@pytest.fixture
def make_task(submit) -> Callable[..., TaskRow]:
    """``make_task(user, bundle_present=True, **spec_fields)``: a new task, committed on its own."""

    def make(user: UserRow, *, bundle_present: bool = True, **spec_fields) -> TaskRow:
        task, created = submit(user, task_spec(**spec_fields), bundle_present=bundle_present)
        assert created
        return task

    return make
