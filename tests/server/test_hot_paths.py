"""What the control plane does on the calls every task makes, kept cheap without giving up a guarantee.

Reads run beside a writer; a task given to a worker wakes only its agent's ``next``; a worker's
``last_seen_at`` is not rewritten on every call; the scheduler tells the server each token it launches.
Every test runs on both databases through the ``db`` fixture.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import event, func, select

from taskyard.backends.base import Backend, LaunchRequest, WorkerState
from taskyard.errors import Unauthorized
from taskyard.models import LogChunk, TaskSpec
from taskyard.server.app import create_app
from taskyard.server.config import ServerConfig, builtin_sizes
from taskyard.server.db.models import TaskRow, UserRow, WorkerCommandRow, WorkerRow, utcnow
from taskyard.server.db.session import read_transaction, transaction
from taskyard.server.notifier import SCHEDULER, Notifier, assignment_key, ended_key, logs_key, task_key, worker_key
from taskyard.server.routers import agent as agent_routes
from taskyard.server.routers import tasks as task_routes
from taskyard.server.scheduler import Scheduler
from taskyard.server.services import agent as agent_service
from taskyard.server.services import logs, pools, users
from taskyard.server.services import tasks as task_service
from taskyard.server.services import workers as worker_service
from taskyard.server.services.lifecycle import set_status
from taskyard.status import TaskStatus, WorkerStatus


def test_a_read_runs_while_a_write_holds_the_lock_and_sees_only_what_is_committed(db, make_user):
    make_user("alice")
    holding, done = threading.Event(), threading.Event()

    def write() -> None:
        with transaction(db) as session:
            users.create_user(session, "bob")
            session.flush()
            holding.set()
            done.wait(10)

    writer = threading.Thread(target=write)
    writer.start()
    try:
        assert holding.wait(10)
        began = time.monotonic()
        with read_transaction(db) as session:
            names = set(session.scalars(select(UserRow.name)))
        assert time.monotonic() - began < 2  # not held up until the writer commits
        assert names == {"alice"}
    finally:
        done.set()
        writer.join()
    with read_transaction(db) as session:
        assert session.scalar(select(func.count()).select_from(UserRow)) == 2


def _worker(db, **fields) -> WorkerRow:
    with transaction(db) as session:
        row, _ = worker_service.create_worker(
            session, user_id=None, pool="default", backend="local", size="X-Small", image="python", keep=False
        )
        for name, value in fields.items():
            setattr(row, name, value)
        return row


def test_last_seen_is_written_at_most_every_second(db):
    worker = _worker(db)
    agent_service.touch(worker)
    first = worker.last_seen_at
    assert first is not None and worker.status == "Running"
    agent_service.touch(worker)
    assert worker.last_seen_at == first
    worker.last_seen_at = utcnow() - timedelta(seconds=1.5)
    agent_service.touch(worker)
    assert worker.last_seen_at > first


def test_last_seen_keeps_within_a_tenth_of_a_short_heartbeat_timeout(db, monkeypatch):
    monkeypatch.setenv("TASKYARD_HEARTBEAT_TIMEOUT", "2")
    worker = _worker(db, last_seen_at=utcnow() - timedelta(seconds=0.3))
    before = worker.last_seen_at
    agent_service.touch(worker)
    assert worker.last_seen_at > before


def test_a_task_given_wakes_the_agents_next_and_an_end_wakes_its_heartbeat_too(db, make_user, make_task):
    alice = make_user()
    task = make_task(alice)
    worker = _worker(db)
    with transaction(db) as session:
        worker_service.give_task(session, session.merge(worker), session.merge(task))
        given = set(session.info["notify"])
    assert assignment_key(worker.name) in given and worker_key(worker.name) not in given
    with transaction(db) as session:
        worker_service.mark_terminating(session, session.merge(worker))
        ending = set(session.info["notify"])
    assert {assignment_key(worker.name), worker_key(worker.name)} <= ending


def test_a_log_follower_is_woken_by_output_and_by_the_end_not_by_each_change_of_status(db, make_user, make_task):
    task = make_task(make_user())
    with transaction(db) as session:
        row = session.get(TaskRow, task.id)
        set_status(session, row, TaskStatus.PREPARING)
        preparing = set(session.info["notify"])
    assert task_key(task.id) in preparing and logs_key(task.id) not in preparing  # a task's page is, its log's not
    with transaction(db) as session:
        row = session.get(TaskRow, task.id)
        logs.append(session, row, [LogChunk(seq=1, stream="stdout", ts=time.time(), text="hello\n")])
        output = set(session.info["notify"])
        set_status(session, row, TaskStatus.IN_PROGRESS)
        set_status(session, row, TaskStatus.FINALIZING)
    assert logs_key(task.id) in output
    with transaction(db) as session:
        set_status(session, session.get(TaskRow, task.id), TaskStatus.SUCCESS)
        ended = set(session.info["notify"])
    assert {logs_key(task.id), ended_key(task.id)} <= ended


def test_log_chunks_put_off_to_the_flush_read_back_in_their_own_transaction_and_after(db, make_user, make_task):
    task = make_task(make_user())
    with transaction(db) as session:
        row = session.get(TaskRow, task.id)
        chunks = [LogChunk(seq=seq, stream="stdout", ts=time.time(), text=f"line {seq}\n") for seq in range(1, 6)]
        assert logs.append(session, row, chunks) == 5
        assert [chunk.seq for chunk in logs.read(session, task.id, after=0)[0]] == [1, 2, 3, 4, 5]
        logs.append(session, row, [LogChunk(seq=6, stream="stderr", ts=time.time(), text="line 6\n")])
        assert logs.tail(session, task.id, max_bytes=14) == "line 5\nline 6\n"
    with read_transaction(db) as session:
        stored, complete = logs.read(session, task.id, after=3)
    assert complete and [(chunk.seq, chunk.stream, chunk.text) for chunk in stored] == [
        (4, "stdout", "line 4\n"), (5, "stdout", "line 5\n"), (6, "stderr", "line 6\n")
    ]


class _Started(Backend):
    name = "started"
    images = {"python": "nothing at all"}
    default_image = "python"

    def launch(self, request: LaunchRequest) -> dict:
        return {"worker": request.worker_name}

    def poll(self, handle: dict) -> WorkerState:
        return WorkerState.RUNNING

    def terminate(self, handle: dict) -> None:
        pass


def test_the_scheduler_tells_each_launched_token_and_stores_the_handle_and_the_end(db):
    sizes = ServerConfig(data_dir=Path("unused"))
    scheduler = Scheduler(db, Notifier(), _Started(), max_workers=1, sizes=sizes, warm_workers=1)
    try:
        with transaction(db) as session:
            live = worker_service.live_workers(session)
            _, warm = scheduler._fill(session, pools.default_spec(), live, scheduler.ledger(live))
        (request,) = warm
        assert scheduler.worker_tokens.get(request.agent_token) is None
        scheduler._launch(None, None, request)
        assert scheduler.worker_tokens.get(request.agent_token) == request.worker_name
        assert scheduler.worker_tokens.get(request.agent_token + "x") is None
        with read_transaction(db) as session:
            row = session.get(WorkerRow, request.worker_name)
            assert row is not None and json.loads(row.handle) == {"worker": request.worker_name}
        scheduler._terminate(scheduler.lanes["started"], request.worker_name, row.handle)
        with read_transaction(db) as session:
            row = session.get(WorkerRow, request.worker_name)
            assert row is not None and row.status == "Terminated" and row.terminated_at is not None
    finally:
        for lane in scheduler.lanes.values():
            lane.close()


class _Counted(_Started):
    def __init__(self) -> None:
        self.stops: list[dict] = []

    def terminate(self, handle: dict) -> None:
        self.stops.append(handle)


def test_a_worker_stopped_between_a_pass_read_and_its_reap_is_not_stopped_again(db):
    backend = _Counted()
    scheduler = Scheduler(db, Notifier(), backend, max_workers=1, sizes=ServerConfig(data_dir=Path("unused")))
    handle = json.dumps({"worker": "w"})
    try:
        ending = _worker(db, status="Terminating", handle=handle, backend="started")
        with transaction(db) as session:
            session.merge(ending)
        with read_transaction(db) as session:
            live = scheduler._live(session)  # as a pass reads them, in its transaction
        assert [w.name for w in live if w.status == "Terminating"] == [ending.name]
        scheduler._terminate(scheduler.lanes["started"], ending.name, handle)  # a stop ends in the meantime
        scheduler._reap([(w.name, w.handle, w.backend) for w in live if w.status == "Terminating"])
    finally:
        for lane in scheduler.lanes.values():
            lane.close()  # after the stops it was given
    assert backend.stops == [{"worker": "w"}]
    with read_transaction(db) as session:
        assert session.get(WorkerRow, ending.name).status == "Terminated"


def _hello(session, user: UserRow) -> TaskRow:
    """A new task of ``user``'s, In Queue (its bundle taken as stored)."""
    spec = TaskSpec(file_name="main.py", bundle_sha256="0" * 64, bundle_size=1)
    task, _ = task_service.create_task(session, user, spec, bundle_present=True, images={"python": "Python"},
                                       sizes=builtin_sizes(), capacity=None)
    return task


def test_a_wait_for_an_ended_task_answers_from_the_read_that_finds_it_ended(tmp_path):
    plane = create_app(ServerConfig(data_dir=tmp_path / "home", warm_workers=0, sandbox="off")).state.plane
    with plane.transaction() as session:
        user = users.create_user(session, "alice")[0]
        task = _hello(session, user)
        for status in (TaskStatus.PREPARING, TaskStatus.IN_PROGRESS, TaskStatus.FINALIZING, TaskStatus.SUCCESS):
            set_status(session, task, status)
    reads, read = [], plane.read

    async def counted(work):
        reads.append(work)
        return await read(work)

    plane.read = counted
    try:
        answer = asyncio.run(task_routes.wait(task.id, plane, user, timeout=5))
    finally:
        plane.database_threads.shutdown(wait=False)
    assert json.loads(answer.body)["status"] == TaskStatus.SUCCESS.value and len(reads) == 1


def test_a_heartbeat_with_nothing_in_it_is_answered_from_one_read_and_one_with_something_writes(tmp_path):
    plane = create_app(ServerConfig(data_dir=tmp_path / "home", warm_workers=0, sandbox="off")).state.plane
    with plane.transaction() as session:
        user = users.create_user(session, "alice")[0]
        worker, _ = worker_service.create_worker(
            session, user_id=user.id, pool="default", backend="local", size="X-Small", image="python", keep=True
        )
        worker.status, worker.last_seen_at = "Running", utcnow()
    calls: list[str] = []
    read, run = plane.read, plane.run

    async def counted_read(work):
        calls.append("read")
        return await read(work)

    async def counted_run(work):
        calls.append("write")
        return await run(work)

    def beat() -> dict:
        calls.clear()
        return json.loads(asyncio.run(agent_routes.heartbeat(None, plane, worker.name, wait=0)).body)

    plane.read, plane.run = counted_read, counted_run
    try:
        assert beat()["kill"] == [] and calls == ["read"]  # heard from lately, nothing to hand: no write
        with plane.transaction() as session:
            task = _hello(session, user)
            task.worker_name, task.stop_reason = worker.name, "kill"
        assert beat()["kill"] == [task.id] and calls == ["read", "write"]
        with plane.transaction() as session:
            session.get(TaskRow, task.id).stop_reason = None
            session.get(WorkerRow, worker.name).last_seen_at = utcnow() - timedelta(seconds=5)
        assert beat()["kill"] == [] and calls == ["read", "write"]  # its liveness is due to be written
        with plane.reading() as session:
            assert utcnow() - session.get(WorkerRow, worker.name).last_seen_at < timedelta(seconds=1)
        assert beat()["terminate"] is False and calls == ["read"]
        with plane.transaction() as session:
            session.add(WorkerCommandRow(id="c1", worker_name=worker.name, order=b"sealed", order_key="k",
                                         created_at=utcnow(), expires_at=utcnow() + timedelta(minutes=1)))
        with plane.reading() as session:
            assert agent_service.quiet(session, worker.name) is None  # an order to hand
        with plane.transaction() as session:
            session.get(WorkerCommandRow, "c1").expires_at = utcnow() - timedelta(seconds=1)
        assert beat()["commands"] == [] and calls == ["read"]  # its sender stopped waiting for it
        with plane.transaction() as session:
            worker_service.mark_terminating(session, session.get(WorkerRow, worker.name))
        assert beat()["terminate"] is True and calls == ["read"]  # it is told, with nothing to write
        with plane.transaction() as session:
            worker_service.end_worker(session, worker.name, WorkerStatus.TERMINATED)
        with pytest.raises(Unauthorized):
            beat()
    finally:
        plane.database_threads.shutdown(wait=False)


def test_under_load_a_scheduler_pass_starts_no_sooner_than_the_last_took_after_its_end(db):
    passes: list[float] = []

    class Slow(Scheduler):
        def tick(self) -> None:  # a pass that waits on a busy database, woken again and again meanwhile
            passes.append(time.monotonic())
            time.sleep(0.03)

    notifier = Notifier()
    scheduler = Slow(db, notifier, _Started(), max_workers=1, sizes=ServerConfig(data_dir=Path("unused")))
    scheduler.start("http://127.0.0.1:1")
    try:
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            notifier.notify(SCHEDULER)
            time.sleep(0.002)
    finally:
        scheduler._stop.set()
        notifier.notify(SCHEDULER)
        scheduler._thread.join(5)
    gaps = [later - earlier for earlier, later in zip(passes, passes[1:])]
    assert len(passes) <= 13 and min(gaps) >= 0.059  # twice as long as a pass takes: without the pacing, 20 passes


def test_a_next_that_hands_out_a_task_writes_it_and_the_agent_s_liveness_in_one_flush(tmp_path):
    plane = create_app(ServerConfig(data_dir=tmp_path / "home", warm_workers=0, sandbox="off")).state.plane
    with plane.transaction() as session:
        user = users.create_user(session, "alice")[0]
        task = _hello(session, user)
        worker, _ = worker_service.create_worker(
            session, user_id=user.id, pool="default", backend="local", size="X-Small", image="python", keep=False
        )
        task.worker_name = worker.name
    flushes: list[int] = []
    with plane.transaction() as session:
        event.listen(session, "after_flush", lambda *_: flushes.append(1))
        answer = agent_service.next_task(session, agent_service.live_worker(session, worker.name), plane.vault)
    assert answer is not None and answer.task is not None and answer.task.task_id == task.id
    assert len(flushes) == 1  # the worker's status and last_seen_at, the task's hand-out: one flush, at the commit
    with plane.reading() as session:
        row = session.get(WorkerRow, worker.name)
        assert row.status == "Running" and row.last_seen_at is not None
        assert session.get(TaskRow, task.id).status == TaskStatus.PREPARING.value
