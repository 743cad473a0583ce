"""The server lease: one live ``taskyard server`` per SQLite database.

On PostgreSQL no lease is taken: servers there are peers that share the queue and the workers
(placing passes take turns through an advisory lock, tasks and warm workers are claimed with
``SKIP LOCKED``; see :mod:`taskyard.server.scheduler`). SQLite has no such locks, so there a
second server would give one warm worker two tasks: a server takes a lease row at start and
renews it while it runs. A second server finds the lease held and refuses to start, saying by
whom. The lease is taken over once it has expired (its holder died without letting go), or at
once when its holder was a process on this host that is gone. It is let go when the server stops.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from datetime import timedelta

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from taskyard.errors import Conflict
from taskyard.server.db.models import ServerLeaseRow, utcnow
from taskyard.server.db.session import transaction

log = logging.getLogger("taskyard.server")
NAME = "server"


class LeaseHeld(Conflict):
    """Another live server holds the database."""


class ServerLease:
    def __init__(self, sessions: sessionmaker[Session], ttl: float) -> None:
        self.sessions = sessions
        self.ttl = ttl
        self.holder = secrets.token_hex(8)
        self.description = f"{socket.gethostname()} pid {os.getpid()}"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lease, or raise LeaseHeld naming its live holder."""
        try:
            with transaction(self.sessions) as session:
                self._take(session)
        except IntegrityError:  # another server inserted it at the same moment: look at it again
            with transaction(self.sessions) as session:
                self._take(session)

    def _take(self, session: Session) -> None:
        row = session.get(ServerLeaseRow, NAME, with_for_update=True)
        expires = utcnow() + timedelta(seconds=self.ttl)
        if row is None:
            session.add(ServerLeaseRow(name=NAME, holder=self.holder, description=self.description, expires_at=expires))
            session.flush()
            return
        if row.holder != self.holder and row.expires_at > utcnow() and not _gone(row.description):
            raise LeaseHeld(
                f"another taskyard server ({row.description}) holds this database; two servers on one database "
                f"would give the same workers two tasks. Stop it first (its lease lapses {self.ttl:g} s after it dies)"
            )
        row.holder, row.description, row.expires_at = self.holder, self.description, expires

    def start(self) -> None:
        """Renew the lease in the background until :meth:`release`."""
        self._thread = threading.Thread(target=self._renew_loop, name="taskyard-lease", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 5):
            try:
                self.acquire()
            except LeaseHeld as exc:
                log.error("the server lease was taken over while this server ran: %s", exc.message)
            except Exception:
                log.exception("could not renew the server lease; retrying")

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with transaction(self.sessions) as session:
            session.execute(delete(ServerLeaseRow).where(ServerLeaseRow.holder == self.holder))


def _gone(description: str) -> bool:
    """Whether the holder was a process of this host that no longer runs."""
    host, _, pid = description.rpartition(" pid ")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True  # a plane made again in this same process takes it over
    return _dead(int(pid)) if os.path.isdir("/proc/self") else _missing(int(pid))


def _dead(pid: int) -> bool:
    """Gone, or dead and not yet reaped by its parent (a zombie still answers kill 0)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except (OSError, IndexError):
        return True


def _missing(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass
    return False
