"""The flow driver: advances flow runs as their tasks end, on a thread of the control plane.

Everything it knows is in the store (flow_runs, flow_tasks, tasks), so a restarted server goes on
where it stopped. It wakes when a task ends or a run is submitted or killed, and looks every
second anyway. Each run is advanced in a transaction of its own, holding the run's row.
A flow task's taskyard task has a fixed id (run, place, attempt): creating it twice gives one task.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from taskyard import settings
from taskyard.config import WorkerConfig
from taskyard.errors import TaskyardError
from taskyard.models import TaskSpec
from taskyard.server.db.models import FlowRunRow, FlowTaskRow, TaskRow, UserRow, utcnow
from taskyard.server.db.session import read_transaction, transaction
from taskyard.server.flows import inputs
from taskyard.server.flows.service import flow_key, tasks_of
from taskyard.server.notifier import FLOWS, NEW_FLOWS, Notifier
from taskyard.server.plane import Plane
from taskyard.server.services import tasks as task_service
from taskyard.server.services.lifecycle import notify_on_commit
from taskyard.server.storage import Storage, bundle_key
from taskyard.status import TaskStatus
from taskyard.workflows.dag import Dag
from taskyard.workflows.models import FlowSpec, FlowStatus, FlowTaskState

log = logging.getLogger("taskyard.flows")

LOOK_EVERY = 1.0  # seconds between passes when nothing wakes the driver
GOING = (FlowStatus.RUNNING.value, FlowStatus.KILLING.value)

#: creates a task for a flow: (session, user, spec) -> the task row (the server's checks applied)
CreateTask = Callable[[Session, UserRow, TaskSpec], TaskRow]


def make_driver(plane: Plane) -> FlowDriver:
    """The plane's flow driver: its tasks are created with the same checks as submitted ones."""

    def create_task(session: Session, user: UserRow, spec: TaskSpec) -> TaskRow:
        backend = plane.backend_of_pool(session, spec.pool)
        task, _ = task_service.create_task(
            session, user, spec, bundle_present=True, images=backend.images, sizes=plane.config.sizes,
            capacity=backend.capacity(),
        )
        return task

    return FlowDriver(plane.sessions, plane.notifier, plane.storage, create_task)


class FlowDriver:
    def __init__(self, sessions: sessionmaker[Session], notifier: Notifier, storage: Storage,
                 create_task: CreateTask) -> None:
        self.sessions, self.notifier, self.storage, self.create_task = sessions, notifier, storage, create_task
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.notifier.listen(FLOWS, NEW_FLOWS)
        self._thread = threading.Thread(target=self._run, name="taskyard-flows", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.notifier.notify(FLOWS, NEW_FLOWS)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        going = True
        while not self._stop.is_set():
            try:
                going = self.tick()
            except Exception:
                log.exception("flow driver pass failed; retrying")
            # With no run going, a task's end is none of its business: only a run submitted or killed wakes it.
            self.notifier.wait_blocking(FLOWS if going else NEW_FLOWS, LOOK_EVERY)

    def tick(self) -> bool:
        """One pass over the runs still going; False if there were none."""
        with read_transaction(self.sessions) as session:
            going = list(session.scalars(select(FlowRunRow.id).where(FlowRunRow.status.in_(GOING))))
        for run_id in going:
            try:
                self.advance(run_id)
            except Exception:  # one run's fault must not hold up the others; it is tried again next pass
                log.exception("could not advance flow run %s; retrying", run_id)
        return bool(going)

    def advance(self, run_id: str) -> None:
        with transaction(self.sessions) as session:
            run = session.get(FlowRunRow, run_id, with_for_update=True)
            if run is not None and run.status in GOING:
                _Pass(self, session, run).advance()


class _Pass:
    """One run advanced once: its ended tasks taken in, the ready ones started, its ending settled."""

    def __init__(self, driver: FlowDriver, session: Session, run: FlowRunRow) -> None:
        self.driver, self.session, self.run = driver, session, run
        self.spec = FlowSpec.model_validate_json(run.spec)
        self.graph: Dag = self.spec.graph()
        self.rows = {row.name: row for row in tasks_of(session, run)}
        user = session.get(UserRow, run.user_id)
        assert user is not None  # users are never deleted
        self.user = user

    def advance(self) -> None:
        for row in self._in(FlowTaskState.ACTIVE):
            self._take_in(row)
        if self.run.status == FlowStatus.KILLING.value:
            self._cancel()
        else:
            self._start_ready()
        self._settle()
        notify_on_commit(self.session, flow_key(self.run.id))

    def _in(self, state: FlowTaskState) -> list[FlowTaskRow]:
        return [self.rows[name] for name in self.graph.names if self.rows[name].state == state.value]

    def _task(self, row: FlowTaskRow) -> TaskRow:
        task = self.session.get(TaskRow, row.task_id)
        assert task is not None  # a flow task's task was created in the same transaction as its task_id
        return task

    # -- ended tasks ------------------------------------------------------------------------------

    def _take_in(self, row: FlowTaskRow) -> None:
        status = TaskStatus(self._task(row).status)
        if not status.is_terminal():
            return
        if status is TaskStatus.SUCCESS:
            row.state, row.finished_at = FlowTaskState.SUCCESS.value, utcnow()
        elif row.attempt <= self.spec.retries and self.run.status == FlowStatus.RUNNING.value:
            row.state = FlowTaskState.WAITING.value
            row.reason = f"attempt {row.attempt} ended {status.alias}; trying again"
        else:
            self._fail(row, f"ended {status.alias}")

    def _fail(self, row: FlowTaskRow, reason: str) -> None:
        row.state, row.reason, row.finished_at = FlowTaskState.FAILED.value, reason, utcnow()
        for name in self._descendants(row.name):
            below = self.rows[name]
            if below.state == FlowTaskState.WAITING.value:
                below.state, below.reason = FlowTaskState.UPSTREAM_FAILED.value, f"upstream task {row.name} failed"

    def _descendants(self, name: str) -> list[str]:
        found: list[str] = []
        stack = self.graph.downstream(name)
        while stack:
            below = stack.pop()
            if below not in found:
                found.append(below)
                stack.extend(self.graph.downstream(below))
        return found

    # -- killing ----------------------------------------------------------------------------------

    def _cancel(self) -> None:
        for row in self._in(FlowTaskState.WAITING):
            row.state, row.reason = FlowTaskState.CANCELLED.value, "the flow run was killed"
        for row in self._in(FlowTaskState.ACTIVE):
            task = self._task(row)
            if not TaskStatus(task.status).is_terminal():
                task_service.request_kill(self.session, self.user, task.id)
        for row in self._in(FlowTaskState.ACTIVE):  # a task not started is killed at once
            self._take_in(row)

    # -- starting ---------------------------------------------------------------------------------

    def _start_ready(self) -> None:
        room = self.spec.max_parallel or len(self.rows)
        room -= len(self._in(FlowTaskState.ACTIVE))
        for row in self._in(FlowTaskState.WAITING):
            if room <= 0:
                return
            if all(self.rows[up].state == FlowTaskState.SUCCESS.value for up in self.graph.upstream[row.name]):
                room -= self._start(row)

    def _start(self, row: FlowTaskRow) -> bool:
        try:
            self._bundle(row)
            row.attempt += 1
            task = self.driver.create_task(self.session, self.user, self._task_spec(row))
        except TaskyardError as exc:
            self._fail(row, f"could not start: {exc.message}")
            return False
        row.task_id, row.state = task.id, FlowTaskState.ACTIVE.value
        row.started_at = row.started_at or utcnow()
        return True

    def _task_spec(self, row: FlowTaskRow) -> TaskSpec:
        assert row.bundle_sha256 is not None and row.bundle_size is not None  # made by _bundle
        return TaskSpec(
            task_id=f"{self.run.id}-{row.position}-{row.attempt}",
            file_name=self.spec.task_files[row.name],
            worker_config=self.spec.worker_configs.get(row.name) or WorkerConfig(),
            pool=self.spec.pool,
            bundle_sha256=row.bundle_sha256,
            bundle_size=row.bundle_size,
        )

    def _bundle(self, row: FlowTaskRow) -> None:
        """The task's files: the run's folder, with its upstream tasks' outputs under ``inputs/``."""
        if row.bundle_sha256 is not None:
            return
        upstream = self.graph.upstream[row.name]
        if not upstream:
            row.bundle_sha256, row.bundle_size = self.spec.bundle_sha256, self.spec.bundle_size
            return
        storage = self.driver.storage
        base = storage.path(bundle_key(self.user.id, self.spec.bundle_sha256))
        given = {name: self._outputs(self.rows[name]) for name in upstream}
        data, sha = inputs.compose(base, given, max_bytes=settings.max_upload_bytes())
        key = bundle_key(self.user.id, sha)
        if not storage.exists(key):
            storage.put_bytes(key, data)
        row.bundle_sha256, row.bundle_size = sha, len(data)

    def _outputs(self, row: FlowTaskRow):
        task = self._task(row)
        if task.outputs_key is None or task.outputs_partial:
            return None
        return self.driver.storage.path(task.outputs_key)

    # -- ending -----------------------------------------------------------------------------------

    def _settle(self) -> None:
        states = [FlowTaskState(row.state) for row in self.rows.values()]
        if not all(state.is_done() for state in states):
            return
        failed = sum(state is not FlowTaskState.SUCCESS for state in states)
        if self.run.status == FlowStatus.KILLING.value:
            ending, reason = FlowStatus.KILLED, "killed on request"
        elif failed:
            ending, reason = FlowStatus.FAILED, f"{failed} of {len(states)} tasks did not succeed"
        else:
            ending, reason = FlowStatus.SUCCESS, None
        self.run.status, self.run.reason, self.run.finished_at = ending.value, reason, utcnow()
