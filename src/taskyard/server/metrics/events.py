"""Counters and histograms fed where things happen, counted only once their transaction commits.

A service calls :func:`observe` with the session it works in; the observation waits in
``session.info`` and is applied after commit (dropped on rollback), so a change that is rolled back
is not counted. The metrics are the process's own: a restart starts them from zero, as Prometheus
counters may.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Histogram
from sqlalchemy import event
from sqlalchemy.orm import Session

from taskyard.status import TaskStatus

REGISTRY = CollectorRegistry(auto_describe=True)
_SECONDS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 4 * 3600, 24 * 3600)

QUEUE_SECONDS = Histogram(
    "taskyard_task_queue_seconds",
    "Seconds from a task's submission to its start (In Progress)",
    ["pool"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
RUN_SECONDS = Histogram(
    "taskyard_task_run_seconds",
    "Seconds from a task's start (In Progress) to its end, by how it ended",
    ["pool", "status"],
    buckets=_SECONDS,
    registry=REGISTRY,
)
LOG_BYTES = Counter("taskyard_log_bytes", "Bytes of task output stored", registry=REGISTRY)
CALLBACK_ATTEMPTS = Counter(
    "taskyard_callback_attempts",
    "Callback delivery attempts, by outcome: delivered, retry (tried again later) or failed (given up)",
    ["outcome"],
    registry=REGISTRY,
)

KEY = "metrics"


def observe(session: Session, apply: Callable[[], None]) -> None:
    """Apply ``apply`` once ``session``'s transaction has committed."""
    session.info.setdefault(KEY, []).append(apply)


Times = tuple[datetime, datetime | None, datetime]


def task_status(session: Session, pool: str, new: TaskStatus, times: Times) -> None:
    """Feed the histograms for a task that moved to ``new``; ``times`` are (created, started, now)."""
    created, started, now = times
    if new is TaskStatus.IN_PROGRESS:
        waited = _seconds(created, now)
        observe(session, lambda: QUEUE_SECONDS.labels(pool).observe(waited))
    elif new.is_terminal() and started is not None:
        ran = _seconds(started, now)
        observe(session, lambda: RUN_SECONDS.labels(pool, new.value).observe(ran))


def log_bytes(session: Session, count: int) -> None:
    observe(session, lambda: LOG_BYTES.inc(count))


def callback_attempt(session: Session, outcome: str) -> None:
    observe(session, lambda: CALLBACK_ATTEMPTS.labels(outcome).inc())


def _seconds(start: datetime, end: datetime) -> float:
    if start.tzinfo is None and end.tzinfo is not None:
        start = start.replace(tzinfo=end.tzinfo)
    return max(0.0, (end - start).total_seconds())


@event.listens_for(Session, "after_commit")
def _after_commit(session: Session) -> None:
    for apply in session.info.pop(KEY, ()):
        apply()


@event.listens_for(Session, "after_rollback")
def _after_rollback(session: Session) -> None:
    session.info.pop(KEY, None)
