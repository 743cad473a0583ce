"""What the sender sends, and what the API shows: a delivery's request, and the record of its attempts."""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from taskyard import __version__
from taskyard.callbacks import (
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    CallbackAttempt,
    CallbackBody,
    CallbackDelivery,
    CallbackList,
    signature,
)
from taskyard.server.callbacks import outbox, signing
from taskyard.server.callbacks.outbox import PENDING
from taskyard.server.db.models import CallbackAttemptRow, CallbackDeliveryRow, CallbackTargetRow, TaskRow
from taskyard.server.services import logs
from taskyard.server.services.lifecycle import notify_on_commit
from taskyard.server.vault import Vault
from taskyard.status import TaskStatus


@dataclass
class Outgoing:
    delivery_id: str
    url: str
    body: bytes
    headers: dict[str, str] = field(repr=False)  # the bearer token is in there


def outgoing(session: Session, vault: Vault, delivery_id: str, log_bytes: int) -> Outgoing | None:
    """The request that delivers ``delivery_id``, or None if it is no longer pending."""
    delivery = session.get(CallbackDeliveryRow, delivery_id)
    target = session.get(CallbackTargetRow, delivery.task_id) if delivery is not None else None
    if delivery is None or target is None or delivery.state != PENDING:
        return None
    task = session.get(TaskRow, delivery.task_id)
    assert task is not None  # deliveries go with their task
    body = _body(session, task, TaskStatus(delivery.task_status), log_bytes)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"taskyard/{__version__}",
        SIGNATURE_HEADER: signature(signing.secret_of(session, vault, task.user_id), body),
        DELIVERY_HEADER: delivery.id,
    }
    if target.token is not None and target.key_id is not None:
        headers["Authorization"] = f"Bearer {vault.open(target.token, target.key_id)}"
    return Outgoing(delivery.id, target.url, body, headers)


def _body(session: Session, task: TaskRow, status: TaskStatus, log_bytes: int) -> bytes:
    tail = logs.tail(session, task.id, log_bytes) if log_bytes > 0 else ""
    body = CallbackBody(
        task_name=task.file_name, task_id=task.id, success=status is TaskStatus.SUCCESS, logs=tail, status=status.alias
    )
    return body.model_dump_json().encode()


def listing(session: Session, task: TaskRow) -> CallbackList:
    target = session.get(CallbackTargetRow, task.id)
    if target is None:
        return CallbackList()
    rows = session.scalars(
        select(CallbackDeliveryRow)
        .where(CallbackDeliveryRow.task_id == task.id)
        .order_by(CallbackDeliveryRow.created_at, CallbackDeliveryRow.id)
    ).all()
    return CallbackList(url=target.url, deliveries=[delivery_info(session, row) for row in rows])


def delivery_info(session: Session, row: CallbackDeliveryRow) -> CallbackDelivery:
    attempts = session.scalars(
        select(CallbackAttemptRow).where(CallbackAttemptRow.delivery_id == row.id).order_by(CallbackAttemptRow.id)
    ).all()
    return CallbackDelivery(
        id=row.id,
        state=row.state,
        task_status=TaskStatus(row.task_status),
        created_at=row.created_at,
        next_at=row.next_at if row.state == PENDING else None,
        finished_at=row.finished_at,
        attempts=[
            CallbackAttempt(at=a.at, status_code=a.status_code, error=a.error, duration_ms=a.duration_ms)
            for a in attempts
        ],
    )


def resend(session: Session, task: TaskRow) -> CallbackDelivery:
    """A new delivery of an ended task's callback, sent once this transaction commits."""
    row = outbox.resend(session, task)
    notify_on_commit(session, outbox.WAKE)
    session.flush()
    return delivery_info(session, row)
