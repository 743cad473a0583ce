"""``taskyard.tasks``: the Inductiva names for tasks, ``tasks.Task(id)`` and ``tasks.get_tasks()``."""

from __future__ import annotations

from taskyard.client import Client, default_client
from taskyard.sdk import Task
from taskyard.status import TaskStatus


def get_tasks(last_n: int = 10, status: str | TaskStatus | None = None, *, client: Client | None = None) -> list[Task]:
    """Your ``last_n`` most recent tasks, newest first; only those in ``status`` if given.

    ``status`` is a status or its name, in any of its spellings (``"In Queue"``, ``"in_queue"``);
    one the server does not know raises :class:`~taskyard.errors.InvalidInput`. An admin sees
    every user's tasks.
    """
    client = client or default_client()
    wanted = status.value if isinstance(status, TaskStatus) else status
    page = client.list_tasks(limit=max(1, last_n), status=wanted)
    return [Task(info.id, client=client, info=info) for info in page.tasks[:last_n]]


__all__ = ["Task", "get_tasks"]
