"""The roster: the servers live on one PostgreSQL database, and the URLs their agents reach them at.

Each server registers a row of the ``servers`` table at start and refreshes it every few seconds
on a thread of its own, where it also reads the rows of its peers. A row not refreshed for
:data:`SILENT_ROUNDS` rounds belongs to a server that is gone: it is left out, and removed.
Workers are launched with every live server's URL, this server's first
(:meth:`Roster.agent_urls`), and their heartbeat answers carry the list as it is now: an agent
whose server dies calls another one (:class:`taskyard.agent.protocol.Client`).

Nothing here is on a request's path: the list is kept in memory and only the thread touches the
table. SQLite has one server per database (:mod:`taskyard.server.lease`) and no roster.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, sessionmaker

from taskyard.server.db.models import ServerRow, utcnow
from taskyard.server.db.session import transaction

log = logging.getLogger("taskyard.server")
SILENT_ROUNDS = 4  # refreshes a server may miss before it no longer counts as live


class Roster:
    def __init__(self, sessions: sessionmaker[Session], every: float) -> None:
        self.sessions = sessions
        self.every = every
        self.id = secrets.token_hex(8)
        self.url = ""
        self.description = f"{socket.gethostname()} pid {os.getpid()}"
        self._peers: list[str] = []  # the other live servers' URLs, as last read
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, url: str) -> None:
        """Register as reachable at ``url`` (read the peers once), then refresh in the background until :meth:`stop`."""
        self.url = url
        self.refresh()  # the first one registers this server
        self._thread = threading.Thread(target=self._refresh_loop, name="taskyard-roster", daemon=True)
        self._thread.start()

    def agent_urls(self) -> str:
        """Every live server's URL, this one's first, comma-separated: what a worker is launched with."""
        return ",".join(self.urls())

    def urls(self) -> list[str]:
        """This server's URL, then its live peers' (each once)."""
        return list(dict.fromkeys([self.url, *self._peers]))

    def refresh(self) -> None:
        """Say this server lives; read which others do; remove those long gone."""
        with transaction(self.sessions) as session:
            now = utcnow()
            row = session.get(ServerRow, self.id)
            if row is None:  # not registered yet, or removed as gone (this process was stopped long enough)
                row = ServerRow(id=self.id, url=self.url, description=self.description, started_at=now)
                session.add(row)
            row.seen_at = now
            live_since = now - timedelta(seconds=self.every * SILENT_ROUNDS)
            session.execute(delete(ServerRow).where(ServerRow.seen_at < live_since))
            query = select(ServerRow.url).where(ServerRow.id != self.id).order_by(ServerRow.started_at)
            self._peers = list(session.scalars(query))

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.every):
            try:
                self.refresh()
            except Exception:
                log.exception("could not refresh this server's row of the roster; retrying")

    def stop(self) -> None:
        """Leave the roster: agents are told of the others only from now on."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with transaction(self.sessions) as session:
            session.execute(delete(ServerRow).where(ServerRow.id == self.id))
