"""Workers not yet up on a backend that says why: the message on the worker and its task, the backend's own
timeout, and the reason a worker given up leaves (SQLite and PostgreSQL)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from taskyard.backends.base import BackendWithProvisioning, LaunchRequest, Provisioning, WorkerState
from taskyard.server.config import ServerConfig
from taskyard.server.db.models import TaskRow, WorkerRow
from taskyard.server.db.session import transaction
from taskyard.server.notifier import Notifier
from taskyard.server.scheduler import Scheduler
from taskyard.server.services import pools
from taskyard.server.services import workers as worker_service
from taskyard.status import TaskStatus

FULL = "Unschedulable: 0/3 nodes are available: 3 Insufficient cpu."


class WaitingBackend(BackendWithProvisioning):
    """Starts nothing; says of every worker what a test sets in ``said``."""

    name = "waiting"
    images = {"python": "nothing"}
    default_image = "python"

    def __init__(self, provisioning_timeout: float) -> None:
        self.provisioning_timeout = provisioning_timeout
        self.said = Provisioning(WorkerState.STARTING)

    def launch(self, request: LaunchRequest) -> dict:
        return {"worker": request.worker_name}

    def poll(self, handle: dict) -> WorkerState:
        return self.said.state

    def provisioning(self, handle: dict) -> Provisioning:
        return self.said

    def terminate(self, handle: dict) -> None:
        raise AssertionError("these tests stop no worker")


@pytest.fixture
def backend() -> WaitingBackend:
    return WaitingBackend(provisioning_timeout=60)


@pytest.fixture
def scheduler(db, backend):
    made = Scheduler(db, Notifier(), backend, max_workers=2, sizes=ServerConfig(data_dir=Path("unused")))
    made.control_plane_url = "http://control-plane.test"
    yield made
    for lane in made.lanes.values():
        lane.close()


def launched(scheduler: Scheduler, task_id: str) -> str:
    """The task's new worker, launched (its agent never calls in); its name."""
    with transaction(scheduler.sessions) as session:
        live = worker_service.live_workers(session)
        [(claimed, lease, request)], _ = scheduler._fill(session, pools.default_spec(), live, scheduler.ledger(live))
    assert claimed == task_id
    scheduler._launch(task_id, lease, request)
    return request.worker_name


def poll(scheduler: Scheduler, backend: WaitingBackend, worker: str) -> None:
    scheduler._poll_provisioning(scheduler.lanes[backend.name], backend, {worker: {"worker": worker}})


def rows(db, task_id: str, worker: str) -> tuple[TaskRow, WorkerRow]:
    with transaction(db) as session:
        return session.get(TaskRow, task_id), session.get(WorkerRow, worker)


def test_the_backends_message_is_on_the_worker_and_its_task_then_goes(db, make_user, make_task, scheduler, backend):
    task_id = make_task(make_user()).id
    worker = launched(scheduler, task_id)
    backend.said = Provisioning(WorkerState.STARTING, FULL)
    poll(scheduler, backend, worker)
    task, row = rows(db, task_id, worker)
    assert (task.status, task.reason) == (TaskStatus.IN_QUEUE.value, f"waiting for worker {worker} to start: {FULL}")
    assert (row.status, row.reason) == ("Provisioning", FULL)
    backend.said = Provisioning(WorkerState.STARTING)  # placed now: nothing to tell
    poll(scheduler, backend, worker)
    task, row = rows(db, task_id, worker)
    assert (task.reason, row.reason) == (None, None)


def test_the_backends_provisioning_timeout_governs_its_workers(
    db, make_user, make_task, scheduler, backend, monkeypatch
):
    monkeypatch.setenv("TASKYARD_PROVISION_TIMEOUT", "0.2")  # the server's: not for this backend's workers
    task_id = make_task(make_user()).id
    worker = launched(scheduler, task_id)
    backend.said = Provisioning(WorkerState.STARTING, FULL)
    poll(scheduler, backend, worker)
    time.sleep(0.3)
    scheduler._reconcile([pools.default_spec()])
    assert rows(db, task_id, worker)[1].status == "Provisioning"

    backend.provisioning_timeout = 0.2
    scheduler._reconcile([pools.default_spec()])
    task, row = rows(db, task_id, worker)
    given_up = f"it did not start within 0.2 s: {FULL}"
    assert (row.status, row.reason) == ("Terminating", f"lost: {given_up}")
    assert (task.status, task.worker_name) == (TaskStatus.IN_QUEUE.value, None)
    assert task.reason == f"worker {worker} was lost ({given_up}); queued again"


def test_a_worker_gone_before_it_came_up_is_lost_at_once_with_the_backends_words(
    db, make_user, make_task, scheduler, backend
):
    task_id = make_task(make_user()).id
    worker = launched(scheduler, task_id)
    backend.said = Provisioning(WorkerState.GONE, "container taskyard-init exited with code 1: Error")
    poll(scheduler, backend, worker)
    task, row = rows(db, task_id, worker)
    assert row.reason == "lost: its worker disappeared: container taskyard-init exited with code 1: Error"
    assert task.status == TaskStatus.IN_QUEUE.value and "queued again" in task.reason
