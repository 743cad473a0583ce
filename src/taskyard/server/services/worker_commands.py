"""Who may send a command to a worker, and to which: its owner or an admin, to a running worker."""

from __future__ import annotations

from sqlalchemy.orm import Session

from taskyard.errors import Conflict
from taskyard.server.db.models import UserRow
from taskyard.server.services.workers import get_worker
from taskyard.status import WorkerStatus


def reachable(session: Session, user: UserRow, name: str) -> str:
    """``name`` if ``user`` may send it commands now; NotFound for another user's worker (as for one that
    does not exist), Conflict for a worker that is not running."""
    worker = get_worker(session, user, name)
    if worker.status != WorkerStatus.RUNNING.value:
        raise Conflict(f"worker {name} is {WorkerStatus(worker.status).value}: only a running worker takes commands")
    return worker.name
