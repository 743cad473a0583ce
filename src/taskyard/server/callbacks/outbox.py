"""The callback outbox: targets, deliveries and attempts. No network here; every function takes a session."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import delete, func, or_, select
from sqlalchemy.orm import Session

from taskyard.errors import Conflict, InvalidInput
from taskyard.models import TaskSpec
from taskyard.server.config import CallbackSettings
from taskyard.server.db.models import CallbackAttemptRow, CallbackDeliveryRow, CallbackTargetRow, TaskRow, utcnow
from taskyard.server.metrics import events as metric_events
from taskyard.server.vault import Vault
from taskyard.status import TaskStatus

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
WAKE = "callbacks"  # the notifier key the sender waits on


# -- targets ----------------------------------------------------------------------------------------


def check_host(settings: CallbackSettings, url: str) -> None:
    """Refuse a callback URL whose host the server's ``callbacks.allowed_hosts`` does not list."""
    allowed = {host.lower() for host in settings.allowed_hosts}
    host = (urlsplit(url).hostname or "").lower()
    if allowed and host not in allowed:
        raise InvalidInput(
            f"callback_url host {host!r} is not allowed on this server; allowed hosts: {', '.join(sorted(allowed))}",
            field="callback_url",
        )


def split_token(spec: TaskSpec) -> tuple[TaskSpec, str | None]:
    """The spec as it is stored (no token: that is sealed apart) and the callback token."""
    if spec.callback_url_token is None:
        return spec, None
    return spec.model_copy(update={"callback_url_token": None}), spec.callback_url_token


def register(
    session: Session, vault: Vault, settings: CallbackSettings, task: TaskRow, spec: TaskSpec, token: str | None
) -> None:
    """Give a new task the callback its spec asks for, if any; refused if the host is not allowed."""
    if spec.callback_url is None:
        return
    check_host(settings, spec.callback_url)
    attach(session, vault, task, spec.callback_url, token)


def attach(session: Session, vault: Vault, task: TaskRow, url: str, token: str | None) -> None:
    """Make ``task`` call back ``url`` when it ends, with ``token`` (sealed here) as its bearer token."""
    sealed, key = vault.seal(token) if token else (None, None)
    session.add(CallbackTargetRow(task_id=task.id, url=url, token=sealed, key_id=key))
    task.has_callback = True


# -- deliveries -------------------------------------------------------------------------------------


def on_status(session: Session, task: TaskRow, old: TaskStatus, new: TaskStatus) -> bool:
    """Called for every status change: queue a delivery when a task with a callback ends.

    A task queued again right after an ending (a retry) drops the delivery of that ending,
    which was never sent: it is in the same transaction. True when the sender is to be woken.
    """
    if new is TaskStatus.IN_QUEUE and old.is_terminal():
        _drop_unsent(session, task.id)
        return False
    if not new.is_terminal() or not task.has_callback:
        return False
    enqueue(session, task.id, new)
    return True


def enqueue(session: Session, task_id: str, status: TaskStatus) -> CallbackDeliveryRow:
    now = utcnow()
    row = CallbackDeliveryRow(
        id=uuid.uuid4().hex,
        task_id=task_id,
        state=PENDING,
        task_status=status.value,
        attempts=0,
        next_at=now,
        created_at=now,
    )
    session.add(row)
    return row


def _drop_unsent(session: Session, task_id: str) -> None:
    session.flush()
    unsent = (CallbackDeliveryRow.task_id == task_id, CallbackDeliveryRow.state == PENDING)
    session.execute(delete(CallbackDeliveryRow).where(*unsent, CallbackDeliveryRow.attempts == 0))


def resend(session: Session, task: TaskRow) -> CallbackDeliveryRow:
    """A new delivery of an ended task's callback."""
    status = TaskStatus(task.status)
    if not task.has_callback:
        raise Conflict(f"task {task.id!r} has no callback_url", field="task_id")
    if not status.is_terminal():
        raise Conflict(f"task {task.id!r} has not ended yet ({status.alias}); its callback is sent when it does")
    return enqueue(session, task.id, status)


# -- the sender's side --------------------------------------------------------------------------------


def _due(now: datetime):
    lease_free = or_(CallbackDeliveryRow.lease_until.is_(None), CallbackDeliveryRow.lease_until < now)
    return (CallbackDeliveryRow.state == PENDING, lease_free)


def claim(session: Session, now: datetime, lease: float, limit: int) -> list[str]:
    """Lease up to ``limit`` due deliveries for ``lease`` seconds; their ids."""
    query = select(CallbackDeliveryRow).where(*_due(now), CallbackDeliveryRow.next_at <= now)
    rows = session.scalars(query.order_by(CallbackDeliveryRow.next_at).limit(limit).with_for_update(skip_locked=True))
    claimed = []
    for row in rows:
        row.lease_until = now + timedelta(seconds=lease)
        claimed.append(row.id)
    return claimed


def next_due(session: Session, now: datetime) -> datetime | None:
    """When the next pending delivery falls due (its lease, if it has one, run out)."""
    pending = select(func.min(CallbackDeliveryRow.next_at)).where(*_due(now))
    leased = select(func.min(CallbackDeliveryRow.lease_until)).where(
        CallbackDeliveryRow.state == PENDING, CallbackDeliveryRow.lease_until >= now
    )
    times = [t for t in (session.scalar(pending), session.scalar(leased)) if t is not None]
    return min(times) if times else None


@dataclass
class Answer:
    """How one attempt went: the receiver's status code (None: no answer), or what went wrong."""

    status_code: int | None
    error: str | None
    duration_ms: float
    retry_after: float | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def retryable(self) -> bool:
        return self.status_code is None or self.status_code >= 500 or self.status_code == 429


def record(session: Session, settings: CallbackSettings, delivery_id: str, answer: Answer) -> None:
    """Store an attempt and decide what comes next: done, given up, or tried again later."""
    delivery = session.get(CallbackDeliveryRow, delivery_id, with_for_update=True)
    if delivery is None or delivery.state != PENDING:
        return
    now = utcnow()
    session.add(
        CallbackAttemptRow(
            delivery_id=delivery.id,
            at=now,
            status_code=answer.status_code,
            error=answer.error,
            duration_ms=answer.duration_ms,
        )
    )
    delivery.attempts += 1
    delivery.lease_until = None
    if answer.delivered or not answer.retryable or delivery.attempts >= settings.attempts:
        delivery.state = DELIVERED if answer.delivered else FAILED
        delivery.finished_at = now
        metric_events.callback_attempt(session, delivery.state)
        return
    metric_events.callback_attempt(session, "retry")
    delivery.next_at = now + timedelta(seconds=backoff(settings, delivery.attempts, answer.retry_after))


def backoff(settings: CallbackSettings, attempts: int, retry_after: float | None = None) -> float:
    """Seconds before the next try after ``attempts`` tries: doubling, capped, with ±25 % jitter."""
    delay = min(settings.max_delay, settings.first_delay * 2 ** (attempts - 1))
    jittered = delay * random.uniform(0.75, 1.25)
    if retry_after is not None:
        jittered = max(jittered, retry_after)
    return min(settings.max_delay, jittered)
