"""Two schedulers on one PostgreSQL database place each task once and give each warm worker one task."""

from __future__ import annotations

import threading
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from taskyard.backends.base import Backend, LaunchRequest, WorkerState
from taskyard.server.config import ServerConfig
from taskyard.server.db.models import ServerRow, TaskRow, WorkerRow, utcnow
from taskyard.server.db.session import transaction
from taskyard.server.notifier import Notifier
from taskyard.server.peer_wakeups import PeerWakeups
from taskyard.server.roster import Roster
from taskyard.server.scheduler import STOPPED_BEFORE_LAUNCH, Scheduler
from taskyard.status import WorkerStatus

from support import wait_for

pytestmark = pytest.mark.postgres


class CountingBackend(Backend):
    """Starts nothing but counts the launches it is asked for; every worker it is asked about runs."""

    name = "local"
    images = {"python": "nothing"}
    default_image = "python"

    def __init__(self) -> None:
        self.launched: list[str] = []
        self.lock = threading.Lock()

    def launch(self, request: LaunchRequest) -> dict:
        with self.lock:
            self.launched.append(request.worker_name)
        return {"name": request.worker_name}

    def poll(self, handle: dict) -> WorkerState:
        return WorkerState.RUNNING

    def terminate(self, handle: dict) -> None:
        pass


class SlowBackend(CountingBackend):
    """Its launches wait until released: the backend of a server alive but slow."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.terminated: list[str] = []

    def launch(self, request: LaunchRequest) -> dict:
        self.release.wait(30)
        return super().launch(request)

    def terminate(self, handle: dict) -> None:
        self.terminated.append(handle["name"])


@pytest.fixture
def db_url(request, tmp_path):  # PostgreSQL only: SQLite keeps one server per database
    pg_url = request.getfixturevalue("pg_url")
    admin = request.getfixturevalue("pg_admin")
    schema = "t_peers_" + tmp_path.name[-8:].lower().replace("-", "_")
    admin.execute(f'CREATE SCHEMA "{schema}"')
    try:
        yield f"{pg_url}?options=-csearch_path%3D{schema}"
    finally:
        admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def _warm_worker(db, name: str) -> None:
    with transaction(db) as session:
        session.add(
            WorkerRow(
                name=name, user_id=None, pool="default", backend="local", status=WorkerStatus.RUNNING.value,
                size="X-Small", image="python", token_hash=name.ljust(64, "0"), keep=False, created_at=utcnow(),
                last_seen_at=utcnow(),
            )
        )  # fmt: skip


def test_two_schedulers_place_each_task_once(db, make_user, make_task):
    alice = make_user()
    tasks = [make_task(alice).id for _ in range(30)]
    backends = [CountingBackend(), CountingBackend()]
    config = ServerConfig(data_dir=Path("unused"))
    schedulers = [Scheduler(db, Notifier(), b, max_workers=20, warm_workers=0, sizes=config) for b in backends]
    for number in range(6):  # up and heard from since the schedulers started
        _warm_worker(db, f"tw-warm{number}")
    barrier = threading.Barrier(2)

    def run(scheduler: Scheduler) -> None:
        barrier.wait()
        for _ in range(5):
            scheduler.tick()

    threads = [threading.Thread(target=run, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for scheduler in schedulers:
        for lane in scheduler.lanes.values():
            lane.close()
    with transaction(db) as session:
        placed = dict(session.execute(select(TaskRow.id, TaskRow.worker_name).where(TaskRow.id.in_(tasks))).all())
        busy = session.scalar(select(WorkerRow.name).where(WorkerRow.user_id.is_(None)).limit(1))
    holders = Counter(name for name in placed.values() if name is not None)
    assert all(count == 1 for count in holders.values()), holders  # no worker holds two tasks
    assert len(holders) == 20  # the pool's limit, across both servers
    assert busy is None  # every warm worker was given a task
    launched = backends[0].launched + backends[1].launched
    assert len(launched) == len(set(launched)) == 14  # each new worker started once, by one server


def test_a_wake_up_reaches_the_peer_servers_and_not_back(pg_url):
    here, there = Notifier(), Notifier()
    mine, theirs = PeerWakeups(pg_url, here), PeerWakeups(pg_url, there)
    mine.start()
    theirs.start()
    try:
        for notifier in (here, there):
            notifier.wait_blocking("task:abc", 0)  # a thread waits on the key from now on
        mine.publish(("task:abc", "scheduler"))
        assert there.wait_blocking("task:abc", 10)
        assert not here.wait_blocking("task:abc", 0.5)  # its own notification is not handed back to it
    finally:
        mine.stop()
        theirs.stop()


def _close(*schedulers: Scheduler) -> None:
    for scheduler in schedulers:
        for lane in scheduler.lanes.values():
            lane.close()


def test_a_claim_that_lapses_unlaunched_is_taken_back_and_a_late_launch_stopped(db, make_user, make_task, monkeypatch):
    monkeypatch.setenv("TASKYARD_CLAIM_SECONDS", "0.2")
    task_id = make_task(make_user()).id
    slow, other = SlowBackend(), CountingBackend()
    config = ServerConfig(data_dir=Path("unused"))
    a, b = (Scheduler(db, Notifier(), each, max_workers=1, warm_workers=0, sizes=config) for each in (slow, other))
    try:
        a.tick()  # A claims a worker for the task; its launch hangs (A is slow, or dead)
        with transaction(db) as session:
            claimed = session.get(TaskRow, task_id).worker_name
        assert claimed is not None
        time.sleep(0.6)  # the claim lapses, and B's next pass looks for faults
        b.tick()
        with transaction(db) as session:
            task, worker = session.get(TaskRow, task_id), session.get(WorkerRow, claimed)
            assert (task.worker_name, task.lease_token) == (None, None)
            assert task.reason == f"worker {claimed}: {STOPPED_BEFORE_LAUNCH}; queued again"
            assert (worker.status, worker.reason) == (WorkerStatus.FAILED.value, STOPPED_BEFORE_LAUNCH)
        b.tick()  # B gives it a worker of its own
        wait_for(lambda: other.launched)
        slow.release.set()  # A's launch ends after all: the worker it started is stopped again
        wait_for(lambda: slow.terminated == [claimed])
        with transaction(db) as session:
            assert session.get(TaskRow, task_id).worker_name == other.launched[0]
            assert session.get(WorkerRow, claimed).status == WorkerStatus.FAILED.value
    finally:
        slow.release.set()
        _close(a, b)


def test_the_roster_gives_each_server_the_live_ones_its_own_first(db):
    a, b = Roster(db, every=0.1), Roster(db, every=0.1)
    a.start("http://a.test:1")
    b.start("http://b.test:2")
    try:
        wait_for(lambda: a.urls() == ["http://a.test:1", "http://b.test:2"])
        assert b.agent_urls() == "http://b.test:2,http://a.test:1"
        b.stop()
        wait_for(lambda: a.urls() == ["http://a.test:1"])
    finally:
        a.stop()


def test_a_server_silent_too_long_is_left_out_of_the_roster(db):
    with transaction(db) as session:  # a server killed a while ago: its row was not refreshed since
        long_ago = utcnow() - timedelta(seconds=5)
        session.add(ServerRow(id="gone", url="http://gone.test:1", description="x", started_at=long_ago,
                              seen_at=long_ago))  # fmt: skip
    roster = Roster(db, every=0.1)
    roster.start("http://a.test:1")
    try:
        assert roster.urls() == ["http://a.test:1"]
        with transaction(db) as session:
            assert session.get(ServerRow, "gone") is None  # and removed
    finally:
        roster.stop()
