"""The scheduler repairs a task left In Queue on a worker that has ended (SQLite and PostgreSQL)."""

from __future__ import annotations

from pathlib import Path

import pytest

from taskyard.backends.base import Backend, LaunchRequest, WorkerState
from taskyard.server.config import ServerConfig
from taskyard.server.db.models import TaskRow, WorkerRow, utcnow
from taskyard.server.db.session import transaction
from taskyard.server.notifier import Notifier
from taskyard.server.scheduler import Scheduler
from taskyard.status import TaskStatus, WorkerStatus


class IdleBackend(Backend):
    """Starts nothing; every worker it is asked about runs."""

    name = "idle"
    images = {"python": "nothing"}
    default_image = "python"

    def launch(self, request: LaunchRequest) -> dict:
        raise AssertionError("these tests start no worker")

    def poll(self, handle: dict) -> WorkerState:
        return WorkerState.RUNNING

    def terminate(self, handle: dict) -> None:
        raise AssertionError("these tests stop no worker")


@pytest.fixture
def scheduler(db):
    made = Scheduler(db, Notifier(), IdleBackend(), max_workers=2, sizes=ServerConfig(data_dir=Path("unused")))
    yield made
    for lane in made.lanes.values():
        lane.close()


def _ended_worker(db, name: str, status: WorkerStatus, user_id: int) -> None:
    with transaction(db) as session:
        session.add(
            WorkerRow(
                name=name, user_id=user_id, pool="default", backend="idle", status=status.value, size="X-Small",
                image="python", token_hash=name.ljust(64, "0"), keep=False, created_at=utcnow(),
            )
        )  # fmt: skip


def _point(db, task_id: str, **fields) -> None:
    with transaction(db) as session:
        task = session.get(TaskRow, task_id)
        for key, value in fields.items():
            setattr(task, key, value)


def _row(db, task_id: str) -> TaskRow:
    with transaction(db) as session:
        return session.get(TaskRow, task_id)


@pytest.mark.parametrize("ended", [WorkerStatus.TERMINATED, WorkerStatus.FAILED])
def test_a_queued_task_on_an_ended_worker_is_queued_again(db, make_user, make_task, scheduler, ended):
    alice = make_user()
    task = make_task(alice)
    _ended_worker(db, "w-gone", ended, alice.id)
    _point(db, task.id, worker_name="w-gone", lease_token="abc")
    scheduler._reconcile([])
    row = _row(db, task.id)
    assert (row.status, row.worker_name, row.lease_token) == (TaskStatus.IN_QUEUE.value, None, None)
    assert "queued again" in row.reason


def test_a_queued_task_for_an_ended_kept_worker_ends_terminated_in_queue(db, make_user, make_task, scheduler):
    alice = make_user()
    task = make_task(alice)
    _ended_worker(db, "w-kept", WorkerStatus.TERMINATED, alice.id)
    _point(db, task.id, worker_name="w-kept", target_worker="w-kept")
    scheduler._reconcile([])
    assert _row(db, task.id).status == TaskStatus.MACHINE_TERMINATED_IN_QUEUE.value


def test_a_queued_task_on_a_live_worker_is_left_alone(db, make_user, make_task, scheduler):
    alice = make_user()
    task = make_task(alice)
    _ended_worker(db, "w-live", WorkerStatus.PROVISIONING, alice.id)
    _point(db, task.id, worker_name="w-live")
    scheduler._reconcile([])
    assert _row(db, task.id).worker_name == "w-live"
