"""A task's metadata: the user's key/value notes on it, kept as JSON in ``tasks.metadata_json``."""

from __future__ import annotations

import json

from sqlalchemy.orm import Session

from taskyard.errors import InvalidInput
from taskyard.models import TaskMetadata
from taskyard.server.db.models import TaskRow, UserRow
from taskyard.server.services.tasks import get_task


def read(session: Session, user: UserRow, task_id: str) -> TaskMetadata:
    """The task's metadata (empty if none was set); NotFound for a task the user cannot see."""
    return _of(get_task(session, user, task_id))


def update(session: Session, user: UserRow, task_id: str, given: TaskMetadata) -> TaskMetadata:
    """Merge ``given`` into the task's metadata (a key given again is replaced) and return the result.

    Allowed in any status, ended tasks included. The merged metadata must still hold at most 100 keys.
    """
    task = get_task(session, user, task_id, for_update=True)
    merged = {**_of(task).metadata, **given.metadata}
    try:
        result = TaskMetadata(metadata=merged)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="metadata") from None
    task.metadata_json = json.dumps(result.metadata)
    return result


def _of(task: TaskRow) -> TaskMetadata:
    return TaskMetadata(metadata=json.loads(task.metadata_json) if task.metadata_json else {})
