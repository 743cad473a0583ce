"""What the pages show, read from the store: the task table (filtered, a keyset page at a time) and more.

Every function takes the calling user and shows what the API would show them: their own work, or
everyone's for an admin.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskyard.errors import InvalidInput
from taskyard.models import TaskInfo, TaskSpec, WorkerInfo
from taskyard.server.db.models import TaskRow, UserRow
from taskyard.server.services import tasks as task_service
from taskyard.server.services import workers as worker_service
from taskyard.status import TaskStatus

PAGE = 50
SECRET_NAME = re.compile(r"secret|token|pass|key|credential|auth|private", re.IGNORECASE)
MASK = "••••••"


@dataclass(frozen=True)
class TaskFilter:
    status: str = ""  # a status or its alias
    user: str = ""  # a user's name (an admin's filter: others see only their own)
    pool: str = ""
    search: str = ""  # a task id, or its beginning

    def query_args(self) -> dict[str, str]:
        return {
            k: v
            for k, v in (("status", self.status), ("owner", self.user), ("pool", self.pool), ("q", self.search))
            if v
        }


@dataclass
class TaskRowView:
    info: TaskInfo
    size: str | None
    position: int | None


@dataclass
class TaskTable:
    rows: list[TaskRowView] = field(default_factory=list)
    next_cursor: str | None = None


def task_table(session: Session, user: UserRow, wanted: TaskFilter, cursor: str | None = None) -> TaskTable:
    """A page of tasks, newest first, that match ``wanted``; the cursor of the next page, if any."""
    query = select(TaskRow, UserRow.name).join(UserRow, UserRow.id == TaskRow.user_id)
    for condition in _conditions(user, wanted):
        query = query.where(condition)
    if cursor:
        query = query.where(task_service._before(cursor))
    found = session.execute(query.order_by(TaskRow.created_at.desc(), TaskRow.id.desc()).limit(PAGE + 1)).all()
    page = found[:PAGE]
    positions = task_service.queue_positions(session, [task for task, _ in page])
    rows = [_row_view(task, name, positions.get(task.id)) for task, name in page]
    more = len(found) > PAGE
    return TaskTable(rows, task_service._cursor(found[PAGE - 1][0]) if more else None)


def _conditions(user: UserRow, wanted: TaskFilter) -> list:
    conditions = [] if user.is_admin else [TaskRow.user_id == user.id]
    if wanted.status:
        conditions.append(TaskRow.status == _status(wanted.status).value)
    if wanted.user:
        conditions.append(UserRow.name == wanted.user)
    if wanted.pool:
        conditions.append(TaskRow.pool == wanted.pool)
    if wanted.search:
        conditions.append(TaskRow.id.startswith(wanted.search.strip(), autoescape=True))
    return conditions


def _status(text: str) -> TaskStatus:
    try:
        return TaskStatus.from_alias(text)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="status") from None


def _row_view(task: TaskRow, user_name: str, position: int | None) -> TaskRowView:
    return TaskRowView(task_service.to_info(task, user_name, position=position), size_of(task), position)


def size_of(task: TaskRow) -> str | None:
    return (json.loads(task.spec).get("worker_config") or {}).get("worker_size")


def task_detail(session: Session, user: UserRow, task_id: str) -> TaskInfo:
    task = task_service.get_task(session, user, task_id)
    changes = task_service.history(session, task)
    position = task_service.position_in_queue(session, task)
    return task_service.to_info(task, task_service.user_name(session, task), changes, position)


def masked_worker_config(task: TaskRow) -> dict:
    """The task's worker config as submitted (``additional_params`` unpacked), environment values that look
    secret masked; the secrets it names are names, never values."""
    config = TaskSpec.model_validate_json(task.spec).worker_config
    shown = {"worker_image": config.worker_image, "worker_size": config.worker_size, **config.extras()}
    env = shown.get("env_variables") or {}
    if env:
        shown["env_variables"] = {k: MASK if SECRET_NAME.search(k) else v for k, v in env.items()}
    return {key: value for key, value in shown.items() if value not in (None, [], {})}


def counts_by_status(session: Session, user: UserRow) -> dict[TaskStatus, int]:
    query = select(TaskRow.status, func.count()).group_by(TaskRow.status)
    if not user.is_admin:
        query = query.where(TaskRow.user_id == user.id)
    return {TaskStatus(status): count for status, count in session.execute(query)}


def workers(session: Session, user: UserRow, *, include_ended: bool = False) -> list[WorkerInfo]:
    shown = []
    for worker, owner in worker_service.list_workers(session, user, include_ended=include_ended):
        task = task_service.task_of_worker(session, worker)
        shown.append(worker_service.to_info(worker, owner, task.id if task else None))
    return shown


def duration(info: TaskInfo, now: datetime) -> float | None:
    """Seconds it ran (or has run so far); None if it has not started."""
    if info.started_at is None:
        return None
    return ((info.finished_at or now) - info.started_at).total_seconds()
