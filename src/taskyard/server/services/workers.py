"""Workers: created by the scheduler, reached by their agent, terminated by the user or at task end."""

from __future__ import annotations

import json
import secrets
import string
from datetime import datetime

from sqlalchemy import bindparam, select, update
from sqlalchemy.orm import Session

from taskyard.errors import NotFound
from taskyard.models import WorkerInfo
from taskyard.server.db.models import TaskRow, UserRow, WorkerRow, utcnow
from taskyard.server.notifier import SCHEDULER, assignment_key, worker_key
from taskyard.server.services import logs
from taskyard.server.services.lifecycle import notify_on_commit, set_status
from taskyard.server.services.users import hash_token, new_token
from taskyard.status import ACTIVE_VALUES, TaskStatus, WorkerStatus

_ALPHABET = string.ascii_lowercase + string.digits
LIVE = (WorkerStatus.PROVISIONING.value, WorkerStatus.RUNNING.value, WorkerStatus.TERMINATING.value)
RUNNABLE = (WorkerStatus.PROVISIONING.value, WorkerStatus.RUNNING.value)


def new_worker_name() -> str:
    return "tw-" + "".join(secrets.choice(_ALPHABET) for _ in range(10))


def create_worker(
    session: Session,
    *,
    user_id: int | None,
    pool: str,
    backend: str,
    size: str,
    image: str,
    keep: bool,
    gpus: tuple[str, ...] = (),
) -> tuple[WorkerRow, str]:
    """A new worker row in Provisioning; returns it with its agent token (stored only hashed)."""
    token = new_token()
    row = WorkerRow(
        name=new_worker_name(),
        user_id=user_id,
        pool=pool,
        backend=backend,
        status=WorkerStatus.PROVISIONING.value,
        size=size,
        image=image,
        gpus=",".join(gpus) or None,
        token_hash=hash_token(token),
        keep=keep,
        created_at=utcnow(),
    )
    session.add(row)
    return row, token


_LIVE_WORKERS = select(WorkerRow).where(WorkerRow.status.in_(LIVE))


def live_workers(session: Session) -> list[WorkerRow]:
    """Every worker not yet ended, of all pools (a short list: at most the pools' limits plus warm ones)."""
    return list(session.scalars(_LIVE_WORKERS))


def is_busy(worker: WorkerRow) -> bool:
    """Given a task (or made on request and started), not being torn down: it counts against its pool's limit."""
    return worker.status in RUNNABLE and worker.user_id is not None and not worker.requested


def busy_count(session: Session, pool: str) -> int:
    return sum(1 for worker in live_workers(session) if worker.pool == pool and is_busy(worker))


def idle_warm(workers: list[WorkerRow], pool: str, since: datetime) -> list[WorkerRow]:
    """The started workers of ``pool`` that wait for their first task; the ones already up first.

    Only workers made or heard from since ``since`` (so not ones a restart may have lost).
    """
    idle = [
        worker
        for worker in workers
        if worker.pool == pool
        and worker.user_id is None
        and worker.status in RUNNABLE
        and (worker.created_at >= since or (worker.last_seen_at is not None and worker.last_seen_at >= since))
    ]
    return sorted(idle, key=lambda w: (w.status != WorkerStatus.RUNNING.value, w.created_at))


def give_task(session: Session, worker: WorkerRow, task: TaskRow) -> None:
    """Hand a warm worker its one task; it now belongs to the task's user."""
    worker.user_id = task.user_id
    worker.keep = not task.terminate_on_completion
    task.worker_name = worker.name
    notify_on_commit(session, assignment_key(worker.name))


def get_worker(session: Session, user: UserRow, name: str) -> WorkerRow:
    worker = session.get(WorkerRow, name)
    if worker is None or not (user.is_admin or worker.user_id == user.id):
        raise NotFound(f"no worker {name!r}")
    return worker


def task_logs(session: Session, user: UserRow, name: str, max_bytes: int) -> tuple[str, bool]:
    """What the tasks of worker ``name`` printed, oldest first (about the last ``max_bytes`` of each),
    and whether the worker still lives."""
    worker = get_worker(session, user, name)
    query = select(TaskRow.id).where(TaskRow.worker_name == name).order_by(TaskRow.created_at)
    text = "".join(logs.tail(session, task_id, max_bytes) for task_id in session.scalars(query))
    return text, not WorkerStatus(worker.status).is_finished()


def list_workers(session: Session, user: UserRow, *, include_ended: bool = False) -> list[tuple[WorkerRow, str]]:
    query = select(WorkerRow, UserRow.name).outerjoin(UserRow, UserRow.id == WorkerRow.user_id)
    if not user.is_admin:
        query = query.where(WorkerRow.user_id == user.id)
    if not include_ended:
        query = query.where(WorkerRow.status.in_(LIVE))
    return [(row[0], row[1]) for row in session.execute(query.order_by(WorkerRow.created_at.desc()))]


def mark_terminating(
    session: Session, worker: WorkerRow, reason: str | None = None, *, tell_agent: bool = True
) -> None:
    """Mark the worker for the scheduler to stop; ``tell_agent=False`` when its agent hears it in the
    answer it is waiting for (its task's finish), so its long polls are not woken for it."""
    if WorkerStatus(worker.status).is_finished() or worker.status == WorkerStatus.TERMINATING.value:
        return
    worker.status = WorkerStatus.TERMINATING.value
    worker.reason = worker.reason or reason
    agent = (worker_key(worker.name), assignment_key(worker.name)) if tell_agent else ()
    notify_on_commit(session, SCHEDULER, *agent)


def end_worker(session: Session, name: str, status: WorkerStatus) -> None:
    """:func:`mark_ended` in one UPDATE, without loading the row: how the scheduler ends each worker it stopped."""
    session.connection().execute(_END, {"worker": name, "ended": status.value, "at": utcnow()})
    notify_on_commit(session, worker_key(name), assignment_key(name))


def store_handle(session: Session, name: str, handle: dict) -> bool:
    """Keep a launched worker's handle, in one UPDATE; False when the worker is no longer live."""
    values = {"worker": name, "given": json.dumps(handle), "box": handle.get("sandboxed"), "caps": handle.get("limits")}
    return session.connection().execute(_STORE_HANDLE, values).rowcount == 1


# Built once, as every worker's launch and end runs them: a statement built at each call cost as much as
# running it.
_END = (
    update(WorkerRow)
    .where(WorkerRow.name == bindparam("worker"))
    .values(status=bindparam("ended"), terminated_at=bindparam("at"))
)
_STORE_HANDLE = (
    update(WorkerRow)
    .where(WorkerRow.name == bindparam("worker"), WorkerRow.status.in_(LIVE))
    .values(handle=bindparam("given"), sandboxed=bindparam("box"), limits=bindparam("caps"))
)


def mark_ended(session: Session, worker: WorkerRow, status: WorkerStatus, reason: str | None = None) -> None:
    worker.status = status.value
    worker.terminated_at = utcnow()
    worker.reason = worker.reason or reason
    notify_on_commit(session, worker_key(worker.name), assignment_key(worker.name))


def request_terminate(session: Session, user: UserRow, name: str) -> WorkerRow:
    """Terminate a worker by hand; a task it holds ends as terminated by the user."""
    worker = get_worker(session, user, name)
    end_with_tasks(session, worker, by=user.name)
    return worker


def end_with_tasks(session: Session, worker: WorkerRow, *, by: str) -> None:
    """Stop a worker at someone's request; its task ends Machine Terminated by User (or in Queue)."""
    for task in _tasks_on(session, worker):
        ending = TaskStatus.MACHINE_TERMINATED_BY_USER
        if task.status in (TaskStatus.IN_QUEUE.value, TaskStatus.WAITING_FOR_INPUT.value):
            ending = TaskStatus.MACHINE_TERMINATED_IN_QUEUE
        set_status(session, task, ending, reason=f"worker {worker.name} was terminated by {by}")
    mark_terminating(session, worker, reason=f"terminated by {by}")


def _tasks_on(session: Session, worker: WorkerRow) -> list[TaskRow]:
    on_worker = (TaskRow.worker_name == worker.name) | (TaskRow.target_worker == worker.name)
    return list(session.scalars(select(TaskRow).where(on_worker, TaskRow.status.in_(ACTIVE_VALUES))))


def release_fresh_worker(session: Session, task: TaskRow, *, force: bool = False, tell_agent: bool = True) -> None:
    """After ``task`` ends, stop the worker made for it unless it is to be kept (or ``force``)."""
    if task.worker_name is None:
        return
    worker = session.get(WorkerRow, task.worker_name)
    if worker is not None and (force or not worker.keep):
        mark_terminating(session, worker, reason=f"task {task.id} ended", tell_agent=tell_agent)


def to_info(worker: WorkerRow, user_name: str | None, task_id: str | None = None) -> WorkerInfo:
    return WorkerInfo(
        name=worker.name,
        status=WorkerStatus(worker.status),
        user=user_name,
        pool=worker.pool,
        backend=worker.backend,
        size=worker.size,
        image=worker.image,
        gpus=[device for device in (worker.gpus or "").split(",") if device],
        sandboxed=worker.sandboxed,
        limits=worker.limits,
        keep=worker.keep,
        reason=worker.reason,
        task_id=task_id,
        created_at=worker.created_at,
        terminated_at=worker.terminated_at,
        expires_at=worker.expires_at,
    )
