"""Workers launched but not up yet: how long they may take, and what their backend says of them.

A backend with :class:`~taskyard.backends.base.BackendWithProvisioning` tells why a worker it
started still waits (a pod the cluster cannot place, an image it cannot pull). That message is the
worker's reason while it is Provisioning, and the status message of the task waiting In Queue for
it, so that a user sees why nothing happens; both go once the worker's agent calls in. The
backend's own provisioning timeout, when it has one, is how long its workers may take.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from taskyard import settings
from taskyard.backends.base import Backend, BackendWithProvisioning
from taskyard.server.db.models import TaskRow, WorkerRow
from taskyard.server.notifier import task_key
from taskyard.server.services.lifecycle import notify_on_commit
from taskyard.server.services.tasks import task_of_worker
from taskyard.status import TaskStatus


def timeout(backend: Backend | None) -> float:
    """Seconds a worker of ``backend`` may take from its launch until its agent calls in.

    The backend's ``provisioning_timeout`` where it has one, else the server's (``TASKYARD_PROVISION_TIMEOUT``).
    """
    if isinstance(backend, BackendWithProvisioning):
        return backend.provisioning_timeout
    return settings.provision_timeout()


def waiting_note(worker_name: str, message: str) -> str:
    """A queued task's status message while its worker is not up yet, in its backend's words."""
    return f"waiting for worker {worker_name} to start: {message}"


def show(session: Session, worker: WorkerRow, message: str | None) -> None:
    """Put the backend's ``message`` (None: nothing to tell now) on a Provisioning worker and its queued task."""
    if worker.reason != message:  # once a second per worker: only a change is written
        worker.reason = message
    task = task_of_worker(session, worker)
    if task is None or task.status != TaskStatus.IN_QUEUE.value:
        return
    note = waiting_note(worker.name, message) if message is not None else None
    if note is None:
        clear(task)
    elif task.reason != note:
        task.reason = note
        notify_on_commit(session, task_key(task.id))


def clear(task: TaskRow) -> None:
    """The task leaves the queue, or its worker has nothing to tell: a waiting note of its worker's no longer holds."""
    if task.worker_name and task.reason and task.reason.startswith(waiting_note(task.worker_name, "")):
        task.reason = None
