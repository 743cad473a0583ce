"""Tasks: submission (idempotent on the client's task id), reading, listing and killing."""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Collection, Mapping
from datetime import datetime

from sqlalchemy import and_, bindparam, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taskyard.backends.base import Resources
from taskyard.errors import Conflict, InvalidInput, NotFound
from taskyard.models import OutputsInfo, PoolSpec, StatusChange, TaskInfo, TaskSpec
from taskyard.server.config import Size, match_size
from taskyard.server.db.models import StatusChangeRow, TaskRow, UserRow, WorkerRow, utcnow
from taskyard.server.notifier import SCHEDULER
from taskyard.server.services import environments, logs, pools
from taskyard.server.services import secrets as secret_service
from taskyard.server.services import sizes as size_service
from taskyard.server.services import workers as worker_service
from taskyard.server.services.lifecycle import flush_pending, notify_on_commit, record, request_stop, set_status
from taskyard.status import ACTIVE_VALUES, TaskStatus, WorkerStatus

_ALPHABET = string.ascii_lowercase + string.digits


_ID_LENGTH = 20
_ID_SPACE = len(_ALPHABET) ** _ID_LENGTH


def new_task_id() -> str:
    """20 characters of ``[a-z0-9]``, uniformly random: one draw per id, not one per character (a batch makes many)."""
    number = secrets.randbits(_ID_SPACE.bit_length())
    while number >= _ID_SPACE:  # rejected, not folded: every id stays as likely as any other
        number = secrets.randbits(_ID_SPACE.bit_length())
    characters = []
    for _ in range(_ID_LENGTH):
        number, digit = divmod(number, len(_ALPHABET))
        characters.append(_ALPHABET[digit])
    return "".join(characters)


def spec_hash(spec: TaskSpec) -> str:
    body = spec.model_dump_json(exclude={"task_id"})
    return hashlib.sha256(body.encode()).hexdigest()


def create_task(
    session: Session,
    user: UserRow,
    spec: TaskSpec,
    *,
    bundle_present: bool,
    images: Collection[str],
    sizes: Mapping[str, Size],
    capacity: Resources | None,
    venvs: Mapping[str, str] | None = None,
    pools_seen: dict[str, PoolSpec] | None = None,
) -> tuple[TaskRow, bool]:
    """Create a task, or return the existing one for a repeated ``task_id``: ``(row, created)``.

    ``images`` and ``sizes`` are what the backend and the server config offer; ``capacity`` is
    what the backend holds (None: no bound); ``venvs`` the Python virtual environments it has
    (None: it cannot tell). The worker size is stored in its canonical spelling. ``pools_seen``
    keeps the pools already found usable by ``user`` in this transaction (a batch looks each up once).
    """
    spec = _canonical_size(spec, sizes)
    digest = spec_hash(spec)
    if spec.task_id is not None:
        existing = session.get(TaskRow, spec.task_id)
        if existing is not None:
            return _same_task(existing, user, digest), False
    _check_worker_config(spec, images, sizes, capacity)
    pool = _usable_pool(session, user, spec.pool, pools_seen)  # it must exist and be shared with the user
    effective = pools.effective_config(pool, spec.worker_config)
    secret_service.check_task_config(session, user, effective)
    environments.check(spec, effective, venvs)
    if spec.worker is not None:
        _check_target_worker(session, user, spec.worker)
    status = TaskStatus.IN_QUEUE if bundle_present else TaskStatus.WAITING_FOR_INPUT
    task = _new_row(spec, user, digest, status)
    if spec.task_id is not None:
        winner = _insert_given_id(session, task)
        if winner is not None:
            return _same_task(winner, user, digest), False
    else:  # a generated id is new: inserted at the next flush, with the rest of its batch
        session.add(task)
    record(session, task.id, status, task.created_at)
    notify_on_commit(session, SCHEDULER)
    return task, True


def _usable_pool(session: Session, user: UserRow, name: str, seen: dict[str, PoolSpec] | None) -> PoolSpec:
    if seen is None:
        return pools.usable_spec(session, user, name)
    if name not in seen:
        seen[name] = pools.usable_spec(session, user, name)
    return seen[name]


def _insert_given_id(session: Session, task: TaskRow) -> TaskRow | None:
    """Insert a task whose id the client gave; the task stored under that id if it was there first.

    The same id may be submitted twice at once (one wins): the insert is flushed in a savepoint.
    """
    try:
        with session.begin_nested():
            session.add(task)
            session.flush()
    except IntegrityError:
        winner = session.get(TaskRow, task.id)
        if winner is None:  # not a twin submission: some other constraint failed
            raise
        return winner
    return None


def _new_row(spec: TaskSpec, user: UserRow, digest: str, status: TaskStatus) -> TaskRow:
    now = utcnow()
    return TaskRow(
        id=spec.task_id or new_task_id(),
        user_id=user.id,
        file_name=spec.file_name,
        spec=spec.model_dump_json(),
        spec_hash=digest,
        bundle_sha256=spec.bundle_sha256,
        bundle_size=spec.bundle_size,
        status=status.value,
        status_at=now,
        created_at=now,
        target_worker=spec.worker,
        terminate_on_completion=spec.terminate_on_completion,
        pool=spec.pool,
        time_to_live=spec.time_to_live,
        attempt=0,
        log_seq=0,
        log_bytes=0,
        outputs_partial=False,
    )


def _same_task(existing: TaskRow, user: UserRow, digest: str) -> TaskRow:
    """The task submitted again with the same id; a 409 when it is not the same submission.

    Task ids are one namespace for all users. Another user's id gets a 409 that tells nothing of
    that task (not its owner, status or spec); the caller's own id reused for a different task says so.
    """
    if existing.user_id != user.id:
        raise Conflict(f"task id {existing.id!r} is taken; choose another task_id", field="task_id")
    if existing.spec_hash != digest:
        raise Conflict(
            f"your task {existing.id!r} was submitted with other settings or files; choose another task_id",
            field="task_id",
        )
    return existing


def _canonical_size(spec: TaskSpec, sizes: Mapping[str, Size]) -> TaskSpec:
    """``spec`` with its worker size spelled as the server's config spells it (when there is one)."""
    given = spec.worker_config.worker_size
    canonical = match_size(sizes, given) if given is not None else None
    if canonical is None or canonical == given:
        return spec
    config = spec.worker_config.model_copy(update={"worker_size": canonical})
    return spec.model_copy(update={"worker_config": config})


def _check_worker_config(
    spec: TaskSpec, images: Collection[str], sizes: Mapping[str, Size], capacity: Resources | None
) -> None:
    config = spec.worker_config
    image = spec.worker_config.worker_image
    if image is not None and image not in images:
        raise InvalidInput(
            f"unknown worker_image {image!r}; valid images: {', '.join(sorted(images))}",
            field="worker_config.worker_image",
        )
    if config.worker_size is not None:
        size_service.check(sizes, capacity, config.worker_size)


def _check_target_worker(session: Session, user: UserRow, name: str) -> None:
    worker = worker_service.get_worker(session, user, name)
    if WorkerStatus(worker.status) not in (WorkerStatus.PROVISIONING, WorkerStatus.RUNNING):
        raise Conflict(f"worker {name!r} is {worker.status}; it cannot run tasks", field="worker")


def release_lease(session: Session, task_id: str, lease: str | None) -> bool:
    """Drop the lease the scheduler took on a task, in one UPDATE, where it still holds; False when it does not."""
    return session.connection().execute(_RELEASE_LEASE, {"task": task_id, "lease": lease}).rowcount == 1


_RELEASE_LEASE = (  # built once: every launch for a task runs it
    update(TaskRow)
    .where(TaskRow.id == bindparam("task"), TaskRow.lease_token == bindparam("lease"))
    .values(lease_token=None, lease_expires_at=None)
)


def get_task(session: Session, user: UserRow, task_id: str, *, for_update: bool = False) -> TaskRow:
    task = session.scalar(LOCKED_TASK if for_update else _TASK, {"id": task_id})
    if task is None or not (user.is_admin or task.user_id == user.id):
        raise NotFound(f"no task {task_id!r}")
    return task


def get_status(session: Session, user: UserRow, task_id: str) -> TaskStatus:
    """The task's status alone (what a wait checks each time it is woken), refused as :func:`get_task` refuses."""
    found = session.execute(_STATUS, {"id": task_id}).first()
    if found is None or not (user.is_admin or found.user_id == user.id):
        raise NotFound(f"no task {task_id!r}")
    return TaskStatus(found.status)


# Built once, as nearly every call about a task runs one: built at each call, a statement cost about as much
# again as running it.
_TASK = select(TaskRow).where(TaskRow.id == bindparam("id"))
LOCKED_TASK = _TASK.with_for_update()  # the agent's calls lock their task with it too
_STATUS = select(TaskRow.user_id, TaskRow.status).where(TaskRow.id == bindparam("id"))


def bundle_uploaded(session: Session, task: TaskRow) -> None:
    if task.status == TaskStatus.WAITING_FOR_INPUT.value:
        set_status(session, task, TaskStatus.IN_QUEUE)


def list_tasks(
    session: Session, user: UserRow, *, limit: int = 50, cursor: str | None = None, status: str | None = None
) -> tuple[list[tuple[TaskRow, str]], str | None]:
    """Newest first, a page at a time; the cursor is the last row's ``created_at|id``."""
    query = select(TaskRow, UserRow.name).join(UserRow, UserRow.id == TaskRow.user_id)
    if not user.is_admin:
        query = query.where(TaskRow.user_id == user.id)
    if status is not None:
        try:
            query = query.where(TaskRow.status == TaskStatus.from_alias(status).value)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="status") from None
    if cursor:
        query = query.where(_before(cursor))
    rows = session.execute(query.order_by(TaskRow.created_at.desc(), TaskRow.id.desc()).limit(limit + 1)).all()
    page = [(row[0], row[1]) for row in rows[:limit]]
    more = len(rows) > limit
    return page, (_cursor(page[-1][0]) if more else None)


def _cursor(task: TaskRow) -> str:
    return f"{task.created_at.isoformat()}|{task.id}"


def _before(cursor: str):
    try:
        stamp, task_id = cursor.split("|", 1)
        created = datetime.fromisoformat(stamp)
    except ValueError:
        raise InvalidInput("cursor is not one this server gave out", field="cursor") from None
    return or_(TaskRow.created_at < created, and_(TaskRow.created_at == created, TaskRow.id < task_id))


def request_kill(session: Session, user: UserRow, task_id: str) -> TaskRow:
    """Kill a task from any non-terminal state: at once if it has not started, else via its agent."""
    task = get_task(session, user, task_id, for_update=True)
    status = TaskStatus(task.status)
    if status in (TaskStatus.KILLED, TaskStatus.PENDING_KILL):
        return task
    if status.is_terminal():
        raise Conflict(f"task {task_id!r} has already ended ({status.alias}); there is nothing to kill")
    if status in (TaskStatus.WAITING_FOR_INPUT, TaskStatus.IN_QUEUE):
        set_status(session, task, TaskStatus.KILLED, reason="killed before it started")
        worker_service.release_fresh_worker(session, task)
    else:
        set_status(session, task, TaskStatus.PENDING_KILL, reason="kill requested")
        request_stop(session, task, "kill")
    return task


def end_on_lost_worker(session: Session, task: TaskRow, ending: TaskStatus, reason: str) -> None:
    """End a task whose worker was lost or reclaimed, and queue it again if it has retries left."""
    set_status(session, task, ending, reason=reason)
    allowed = TaskSpec.model_validate_json(task.spec).retries_allowed()
    if task.attempt > allowed:
        return
    task.worker_name = None
    note = f"{reason}; running it again (retry {task.attempt} of {allowed})"
    set_status(session, task, TaskStatus.IN_QUEUE, reason=note)
    logs.system_line(session, task, f"[taskyard] {note}")


def position_in_queue(session: Session, task: TaskRow) -> int | None:
    """1 for the next task to start in its pool, 2 after it...; None unless the task is In Queue.

    Queued tasks that already have a worker being readied for them come first (they start as soon
    as it is up), in the order they were submitted; then the others, in the same order.
    """
    if task.status != TaskStatus.IN_QUEUE.value:
        return None
    assigned = task.worker_name is not None
    ahead = _queued_ahead(session, task, assigned=True)
    if not assigned:
        ahead += _queued_ahead(session, task, assigned=False)
    return ahead + 1


def _queued_ahead(session: Session, task: TaskRow, *, assigned: bool) -> int:
    """Queued tasks of ``task``'s pool with (or without) a worker, before it; all those with one if it has none."""
    return session.scalar(queued_ahead_query(task, assigned=assigned)) or 0


def queued_ahead_query(task: TaskRow, *, assigned: bool):
    """The count :func:`_queued_ahead` makes: a range of the queue's index (status, worker_name, pool, created_at)."""
    query = select(func.count()).select_from(TaskRow).where(*_queue_group(task.pool, assigned), TaskRow.id != task.id)
    if assigned == (task.worker_name is not None):  # same group: only those submitted before it
        query = query.where(_before_task(task))
    return query


def queue_positions(session: Session, tasks: list[TaskRow]) -> dict[str, int]:
    """The :func:`position_in_queue` of each of ``tasks`` that is In Queue, for a page of them at once.

    For each pool and group (with a worker being readied, or not), one count of the group's tasks
    before the page's first, then their ranks over the page's span of the queue only: the cost is the
    page's span, not the queue's length.
    """
    queued = [task for task in tasks if task.status == TaskStatus.IN_QUEUE.value]
    positions: dict[str, int] = {}
    for pool in {task.pool for task in queued}:
        mine = [task for task in queued if task.pool == pool]
        readied = [task for task in mine if task.worker_name is not None]
        positions |= _ranks(session, readied, assigned=True, ahead=0)
        waiting = [task for task in mine if task.worker_name is None]
        if waiting:
            ahead = _count(session, *_queue_group(pool, True))  # all those with a worker come first
            positions |= _ranks(session, waiting, assigned=False, ahead=ahead)
    return positions


def _ranks(session: Session, group: list[TaskRow], *, assigned: bool, ahead: int) -> dict[str, int]:
    """Positions of ``group`` (one pool, all with a worker or all without), ``ahead`` queued before the group."""
    if not group:
        return {}
    low, high = min(task.created_at for task in group), max(task.created_at for task in group)
    same = _queue_group(group[0].pool, assigned)
    before = _count(session, *same, TaskRow.created_at < low)
    span = select(TaskRow.id).where(*same, TaskRow.created_at >= low, TaskRow.created_at <= high)
    wanted = {task.id for task in group}
    order = session.scalars(span.order_by(TaskRow.created_at, TaskRow.id))
    return {task_id: ahead + before + index + 1 for index, task_id in enumerate(order) if task_id in wanted}


def _count(session: Session, *conditions) -> int:
    return session.scalar(select(func.count()).select_from(TaskRow).where(*conditions)) or 0


def _queue_group(pool: str, assigned: bool) -> tuple:
    """The conditions of one pool's queued tasks with (or without) a worker being readied."""
    with_worker = TaskRow.worker_name.is_not(None) if assigned else TaskRow.worker_name.is_(None)
    return TaskRow.pool == pool, TaskRow.status == TaskStatus.IN_QUEUE.value, with_worker


def _before_task(task: TaskRow):
    """Tasks submitted before ``task`` (by submission time, then id)."""
    return (TaskRow.created_at < task.created_at) | ((TaskRow.created_at == task.created_at) & (TaskRow.id < task.id))


def history(session: Session, task: TaskRow) -> list[StatusChange]:
    flush_pending(session)
    rows = session.execute(_HISTORY, {"id": task.id}).all()
    changes = []
    for index, row in enumerate(rows):
        ended = rows[index + 1].at if index + 1 < len(rows) else None
        status = TaskStatus(row.status)
        changes.append(
            StatusChange(status=status, alias=status.alias, started_at=row.at, ended_at=ended, reason=row.reason)
        )
    return changes


_HISTORY = (  # rows, not ORM objects: every task page reads them
    select(StatusChangeRow.status, StatusChangeRow.at, StatusChangeRow.reason)
    .where(StatusChangeRow.task_id == bindparam("id"))
    .order_by(StatusChangeRow.id)
)


def to_info(
    task: TaskRow, user_name: str | None, changes: list[StatusChange] | None = None, position: int | None = None
) -> TaskInfo:
    assert user_name is not None  # a task always has its user: tasks.user_id is required, users are never deleted
    status = TaskStatus(task.status)
    outputs = None
    if task.outputs_key is not None:
        outputs = OutputsInfo(size=task.outputs_size or 0, partial=task.outputs_partial)
    return TaskInfo(
        id=task.id,
        file_name=task.file_name,
        status=status,
        alias=status.alias,
        user=user_name,
        pool=task.pool,
        worker_name=task.worker_name,
        exit_code=task.exit_code,
        reason=task.reason,
        attempt=task.attempt,
        time_to_live=task.time_to_live,
        created_at=task.created_at,
        started_at=task.started_at,
        finished_at=task.finished_at,
        outputs=outputs,
        status_history=changes or [],
        position_in_queue=position,
        upload_required=status is TaskStatus.WAITING_FOR_INPUT,
    )


def user_name(session: Session, row: TaskRow | WorkerRow, caller: UserRow | None = None) -> str | None:
    """The name of the row's user; the ``caller``'s own, when it is theirs, without a query (names never change)."""
    if caller is not None and row.user_id == caller.id:
        return caller.name
    user = session.get(UserRow, row.user_id) if row.user_id is not None else None
    return user.name if user else None


def task_of_worker(session: Session, worker: WorkerRow) -> TaskRow | None:
    """The task a worker holds now (not yet ended), if any."""
    return session.scalar(_OF_WORKER, {"name": worker.name})


_OF_WORKER = (
    select(TaskRow)
    .where(TaskRow.worker_name == bindparam("name"), TaskRow.status.in_(ACTIVE_VALUES))
    .order_by(TaskRow.created_at)
    .limit(1)
)
