"""The one state machine: every change of a task's status goes through :func:`set_status`."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from taskyard.server.db.models import StatusChangeRow, TaskRow, utcnow
from taskyard.server.notifier import SCHEDULER, task_key, worker_key
from taskyard.status import TaskStatus, check_transition


def notify_on_commit(session: Session, *keys: str) -> None:
    """Wake the waiters on ``keys`` once this session's transaction has committed."""
    session.info.setdefault("notify", set()).update(keys)


def set_status(session: Session, task: TaskRow, new: TaskStatus, reason: str | None = None) -> None:
    """Move ``task`` to ``new``, refusing illegal transitions, and append it to the history."""
    check_transition(TaskStatus(task.status), new)
    now = utcnow()
    task.status, task.status_at = new.value, now
    if reason is not None:
        task.reason = reason
    _stamp_times(task, new, now)
    session.add(StatusChangeRow(task_id=task.id, status=new.value, at=now, reason=reason))
    keys = [task_key(task.id), SCHEDULER]
    if task.worker_name:
        keys.append(worker_key(task.worker_name))
    notify_on_commit(session, *keys)


def _stamp_times(task: TaskRow, new: TaskStatus, now: datetime) -> None:
    if new is TaskStatus.IN_PROGRESS and task.started_at is None:
        task.started_at = now
    if new.is_terminal():
        task.finished_at = now
        task.lease_token = task.lease_expires_at = None
