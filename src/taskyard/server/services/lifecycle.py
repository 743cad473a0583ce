"""The one state machine: every change of a task's status goes through :func:`set_status`."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Insert, event, insert
from sqlalchemy.orm import Session

from taskyard.server.callbacks import outbox
from taskyard.server.db.models import StatusChangeRow, TaskRow, utcnow
from taskyard.server.metrics import events as metric_events
from taskyard.server.notifier import FLOWS, SCHEDULER, ended_key, logs_key, task_key, worker_key
from taskyard.status import TaskStatus, check_transition


def notify_on_commit(session: Session, *keys: str) -> None:
    """Wake the waiters on ``keys`` once this session's transaction has committed."""
    session.info.setdefault("notify", set()).update(keys)


PENDING = "pending_inserts"  # session.info: statement -> the rows it inserts at the session's next flush
_INSERT_HISTORY = insert(StatusChangeRow)


def insert_at_flush(session: Session, statement: Insert, row: dict) -> None:
    """Insert ``row`` at the session's next flush, after the rows of its task, in one statement with the
    others of its kind: as ORM objects, each was an INSERT of its own, and the unit of work's bookkeeping
    cost more than the INSERT (history and log chunks: written at every change, read as rows)."""
    session.info.setdefault(PENDING, {}).setdefault(statement, []).append(row)


def record(session: Session, task_id: str, status: TaskStatus, at: datetime, reason: str | None = None) -> None:
    """Append a change to the task's history (see :func:`insert_at_flush`)."""
    insert_at_flush(session, _INSERT_HISTORY, {"task_id": task_id, "status": status.value, "at": at, "reason": reason})


@event.listens_for(Session, "before_commit")
def flush_pending(session: Session) -> None:
    """Insert the rows put off so far, flushing their tasks first (a flush with nothing else to do
    does not run :func:`_insert_pending`): at the commit, and before such rows are read."""
    if PENDING in session.info:
        session.flush()
        _insert_pending(session, None)


@event.listens_for(Session, "after_flush")
def _insert_pending(session: Session, _context) -> None:
    pending = session.info.pop(PENDING, None)
    for statement, rows in (pending or {}).items():
        session.connection().execute(statement, rows)


def set_status(
    session: Session, task: TaskRow, new: TaskStatus, reason: str | None = None, *, seen_at: float | None = None
) -> None:
    """Move ``task`` to ``new``, refusing illegal transitions, and append it to the history.

    ``seen_at`` (seconds since the epoch) is when the agent saw the change happen; it is recorded
    instead of the time the report arrived, so that a report held up by an outage of the control
    plane does not stretch the status before it. It is kept between the previous change and now.
    """
    old = TaskStatus(task.status)
    check_transition(old, new)
    now = change_time(task, seen_at)
    task.status, task.status_at = new.value, now
    if reason is not None:
        task.reason = reason
    metric_events.task_status(session, task.pool, new, (task.created_at, task.started_at, now))
    _stamp_times(task, new, now)
    record(session, task.id, new, now, reason)
    # The agent is not woken: what it must act on (a task given, a stop, a terminate) wakes it itself.
    keys = [task_key(task.id)]
    if new is TaskStatus.IN_QUEUE or new.is_terminal():  # work to place, or a place freed
        keys.append(SCHEDULER)
    if outbox.on_status(session, task, old, new):  # its callback, written with its ending
        keys.append(outbox.WAKE)
    if new.is_terminal():
        keys += [FLOWS, ended_key(task.id), logs_key(task.id)]  # a flow's task may have ended; its waiters return
    notify_on_commit(session, *keys)


def change_time(task: TaskRow, seen_at: float | None) -> datetime:
    """``seen_at`` as a time, no earlier than the task's last change and no later than now (clocks differ)."""
    now = utcnow()
    if seen_at is None:
        return now
    seen = min(now, datetime.fromtimestamp(seen_at, timezone.utc))
    last = task.status_at
    if last is None:
        return seen
    return max(last if last.tzinfo else last.replace(tzinfo=timezone.utc), seen)


def _stamp_times(task: TaskRow, new: TaskStatus, now: datetime) -> None:
    if new not in (TaskStatus.WAITING_FOR_INPUT, TaskStatus.IN_QUEUE):
        task.target_worker = None  # out of the queue: it waits for no worker (a retry may run anywhere)
    if new is TaskStatus.IN_PROGRESS:
        task.started_at = now
        if task.time_to_live is not None:
            task.deadline_at = now + timedelta(seconds=task.time_to_live)
    if new is TaskStatus.IN_QUEUE:  # first or again: a retry's times are its own, not its last attempt's
        task.stop_reason = task.stop_requested_at = task.deadline_at = None
        task.started_at = task.finished_at = None
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
