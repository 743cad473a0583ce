"""Helpers for the dashboard tests: a logged-in browser-like client, CSRF values, rows made in bulk."""

from __future__ import annotations

import re

import httpx
from sqlalchemy import select

from taskyard.models import TaskSpec
from taskyard.server.config import builtin_sizes
from taskyard.server.db.models import UserRow
from taskyard.server.db.session import make_engine, make_sessionmaker, transaction
from taskyard.server.services import tasks as task_service

from support import Server

CSRF = re.compile(r'name="csrf" value="([^"]*)"')
OPEN: list[httpx.Client] = []  # closed after each test (see close_clients)


def close_clients() -> None:
    while OPEN:
        OPEN.pop().close()


def logged_in(server: Server, token: str) -> httpx.Client:
    """A client that logged in through the login form, as a browser does: it holds the session cookie."""
    client = browser_like(server)
    form = client.get("/login")
    answer = client.post("/login", data={"csrf": csrf_of(form.text), "token": token, "next": "/"})
    assert answer.status_code == 303 and answer.headers["location"] == "/", answer.text
    return client


def csrf_of(html: str) -> str:
    found = CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def browser_like(server: Server, **headers: str) -> httpx.Client:
    OPEN.append(httpx.Client(base_url=server.url, timeout=30, headers=headers))
    return OPEN[-1]


def bearer(server: Server, token: str) -> httpx.Client:
    return browser_like(server, Authorization=f"Bearer {token}")


def insert_tasks(server: Server, user_name: str, count: int, *, pool: str = "default") -> None:
    """``count`` tasks of ``user_name`` made straight in the store through the task service (waiting for input:
    they are never started), so that large tables take seconds to make."""
    sessions = make_sessionmaker(
        make_engine(server.env.get("TASKYARD_DB_URL") or f"sqlite:///{server.home}/taskyard.db")
    )
    spec = TaskSpec(file_name="bulk.py", bundle_sha256="0" * 64, bundle_size=1, pool=pool)
    with transaction(sessions) as session:
        user = session.scalar(select(UserRow).where(UserRow.name == user_name))
        assert user is not None
        for _ in range(count):
            task_service.create_task(
                session, user, spec, bundle_present=False, images=(), sizes=builtin_sizes(), capacity=None
            )
    sessions.kw["bind"].dispose()
