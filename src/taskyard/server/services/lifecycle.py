"""The one state machine: every change of a task's status goes through :func:`set_status`."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from taskyard.server.callbacks import outbox
from taskyard.server.db.models import StatusChangeRow, TaskRow, utcnow
from taskyard.server.notifier import FLOWS, SCHEDULER, task_key, worker_key
from taskyard.status import TaskStatus, check_transition


def notify_on_commit(session: Session, *keys: str) -> None:
    """Wake the waiters on ``keys`` once this session's transaction has committed."""
    session.info.setdefault("notify", set()).update(keys)


def set_status(session: Session, task: TaskRow, new: TaskStatus, reason: str | None = None) -> None:
    """Move ``task`` to ``new``, refusing illegal transitions, and append it to the history."""
    old = TaskStatus(task.status)
    check_transition(old, new)
    now = utcnow()
    task.status, task.status_at = new.value, now
    if reason is not None:
        task.reason = reason
    _stamp_times(task, new, now)
    session.add(StatusChangeRow(task_id=task.id, status=new.value, at=now, reason=reason))
    # The agent is not woken: what it must act on (a task given, a stop, a terminate) wakes it itself.
    keys = [task_key(task.id)]
    if new is TaskStatus.IN_QUEUE or new.is_terminal():  # work to place, or a place freed
        keys.append(SCHEDULER)
    if outbox.on_status(session, task, old, new):  # its callback, written with its ending
        keys.append(outbox.WAKE)
    if new.is_terminal():
        keys.append(FLOWS)  # a flow's task may have ended
    notify_on_commit(session, *keys)


def _stamp_times(task: TaskRow, new: TaskStatus, now: datetime) -> None:
    if new not in (TaskStatus.WAITING_FOR_INPUT, TaskStatus.IN_QUEUE):
        task.target_worker = None  # out of the queue: it waits for no worker (a retry may run anywhere)
    if new is TaskStatus.IN_PROGRESS:
        task.started_at = now
        if task.time_to_live is not None:
            task.deadline_at = now + timedelta(seconds=task.time_to_live)
    if new is TaskStatus.IN_QUEUE:
        task.stop_reason = task.stop_requested_at = task.deadline_at = None
    if new.is_terminal():
        task.finished_at = now
        task.lease_token = task.lease_expires_at = None


def request_stop(session: Session, task: TaskRow, reason: str) -> None:
    """Ask the agent running ``task`` to stop it; its ending follows ``reason`` ("kill" or "timeout")."""
    if task.stop_reason is None:
        task.stop_reason, task.stop_requested_at = reason, utcnow()
    if task.worker_name:
        notify_on_commit(session, worker_key(task.worker_name))


def stop_ending(task: TaskRow) -> TaskStatus:
    return TaskStatus.TASK_TIMED_OUT if task.stop_reason == "timeout" else TaskStatus.KILLED
