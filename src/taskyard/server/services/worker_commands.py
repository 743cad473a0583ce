"""Commands to kept workers in the store: who may send one, and the rows that carry it between servers.

A command row goes through four steps, each a short transaction that any server of the database
may run: :func:`send` (its sender), :func:`hand` (the heartbeat that carries it to the agent; each
row is handed once, by the ``UPDATE ... WHERE handed_at IS NULL`` of one server), :func:`settle`
(the agent's answer), and :func:`take_answer` (its sender again, which reads the answer and removes
the row at once; :func:`forget` when it stops waiting without one). Orders and answers arrive here
sealed (:class:`Sealed`): opening and sealing them is the broker's
(:mod:`taskyard.server.worker_commands`), outside any transaction.

A command's row lives no longer than its sender's wait, which a crash of the database ends
anyway (a command lost so times out for its sender). So on PostgreSQL the sender's and the agent's
steps commit without waiting for the WAL to reach the disk (``synchronous_commit = off``): that
wait would add to every command a person at a terminal sends.
"""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from sqlalchemy import bindparam, delete, text, update
from sqlalchemy.orm import Session

from taskyard.errors import Conflict
from taskyard.server.db.models import UserRow, WorkerCommandRow, utcnow
from taskyard.server.notifier import command_key, worker_key
from taskyard.server.services.lifecycle import notify_on_commit
from taskyard.server.services.workers import get_worker
from taskyard.status import WorkerStatus

Row = WorkerCommandRow


class Sealed(NamedTuple):
    """A value sealed by the vault, and the id of the key that sealed it."""

    token: bytes
    key_id: str


def reachable(session: Session, user: UserRow, name: str) -> str:
    """``name`` if ``user`` may send it commands now; NotFound for another user's worker (as for one that
    does not exist), Conflict for a worker that is not running."""
    worker = get_worker(session, user, name)
    if worker.status != WorkerStatus.RUNNING.value:
        raise Conflict(f"worker {name} is {WorkerStatus(worker.status).value}: only a running worker takes commands")
    return worker.name


def send(session: Session, worker: str, command_id: str, order: Sealed, expires_at: datetime) -> None:
    """Queue ``order`` for ``worker`` until ``expires_at``, and wake its heartbeat (on whichever server)."""
    _passing(session)
    session.add(Row(id=command_id, worker_name=worker, order=order.token, order_key=order.key_id,
                    created_at=utcnow(), expires_at=expires_at))  # fmt: skip
    notify_on_commit(session, worker_key(worker))


def hand(session: Session, worker: str) -> list[Sealed]:
    """The orders for ``worker`` not handed yet, oldest first, now marked handed: each is handed once."""
    handed = session.connection().execute(_HAND, {"worker": worker, "now": utcnow()})  # Core: every heartbeat runs it
    return [Sealed(token, key) for _created, token, key in sorted(handed.all())]


def unhanded(worker, now) -> tuple:
    """The conditions of the orders for ``worker`` not handed yet and not expired at ``now`` (values or columns)."""
    return Row.worker_name == worker, Row.handed_at.is_(None), Row.expires_at > now


_HAND = (
    update(Row)
    .where(*unhanded(bindparam("worker"), bindparam("now")))
    .values(handed_at=bindparam("now"))
    .returning(Row.created_at, Row.order, Row.order_key)
)


def settle(session: Session, worker: str, command_id: str, answer: Sealed) -> bool:
    """Store the agent's answer and wake its sender; False if ``worker`` has no such command waiting for one."""
    _passing(session)
    query = (
        update(Row)
        .where(Row.id == command_id, Row.worker_name == worker, Row.handed_at.is_not(None), Row.answered_at.is_(None))
        .values(answer=answer.token, answer_key=answer.key_id, answered_at=utcnow())
        .returning(Row.id)
        .execution_options(synchronize_session=False)
    )
    if session.execute(query).first() is None:
        return False
    notify_on_commit(session, command_key(command_id))
    return True


def take_answer(session: Session, command_id: str) -> Sealed | None:
    """The command's sealed answer, its row removed with it; None (and the row kept) while it has none."""
    _passing(session)
    query = delete(Row).where(Row.id == command_id, Row.answered_at.is_not(None)).returning(Row.answer, Row.answer_key)
    found = session.execute(query.execution_options(synchronize_session=False)).first()
    return None if found is None else Sealed(found.answer, found.answer_key)


def forget(session: Session, command_id: str) -> None:
    _passing(session)
    session.execute(delete(Row).where(Row.id == command_id))


def sweep(session: Session) -> None:
    """Remove the commands whose sender stopped waiting without removing them (its server died)."""
    session.execute(delete(Row).where(Row.expires_at < utcnow()))


def _passing(session: Session) -> None:
    """This transaction only moves a command along: on PostgreSQL, its commit need not wait for the disk."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SET LOCAL synchronous_commit = off"))
