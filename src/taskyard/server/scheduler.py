"""The scheduler: claims queued tasks in short transactions, launches workers outside them.

A claim writes a lease (token + expiry) on the task. Slow work (starting or stopping a worker)
happens with no transaction open, and its result is applied only where the lease still holds;
otherwise what was started is stopped again.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from taskyard import settings
from taskyard.backends.base import Backend, LaunchRequest
from taskyard.models import TaskSpec
from taskyard.server.db.models import TaskRow, WorkerRow, utcnow
from taskyard.server.db.session import transaction
from taskyard.server.notifier import SCHEDULER, Notifier, worker_key
from taskyard.server.services import tasks as task_service
from taskyard.server.services import workers as worker_service
from taskyard.server.services.lifecycle import notify_on_commit, set_status
from taskyard.status import TaskStatus, WorkerStatus

log = logging.getLogger("taskyard.scheduler")

LEASE = timedelta(seconds=60)
PROVISION_TIMEOUT = timedelta(seconds=60)
KILL_SLACK = 5.0  # seconds past the kill grace before the control plane stops a worker itself
DEFAULT_SIZE = "X-Small"
POOL = "default"


class Scheduler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        notifier: Notifier,
        backend: Backend,
        *,
        max_workers: int,
        warm_workers: int | None = None,
    ) -> None:
        self.sessions = sessions
        self.notifier = notifier
        self.backend = backend
        self.max_workers = max_workers
        self.warm_workers = settings.warm_workers() if warm_workers is None else warm_workers
        self.started_at = utcnow()
        self.control_plane_url = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._terminator = ThreadPoolExecutor(max_workers=4, thread_name_prefix="taskyard-terminate")
        self._terminating: set[str] = set()
        self._lock = threading.Lock()

    def start(self, control_plane_url: str) -> None:
        self.control_plane_url = control_plane_url
        self._thread = threading.Thread(target=self._run, name="taskyard-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling and the idle warm workers; workers with a task go on and report later."""
        self._stop.set()
        self.notifier.notify(SCHEDULER)
        if self._thread is not None:
            self._thread.join(timeout=10)
        with transaction(self.sessions) as session:
            for worker in worker_service.idle_warm(session, POOL):
                worker_service.mark_terminating(session, worker, reason="the control plane stopped")
        self._reap()
        self._terminator.shutdown(wait=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick()
            except Exception:
                log.exception("scheduler pass failed; retrying")
            self.notifier.wait_blocking(SCHEDULER, 0.5)

    def tick(self) -> None:
        for task_id, lease, request in self._claim():
            self._launch(task_id, lease, request)
        for request in self._warm_up():
            self._launch(None, None, request)
        self._assign_to_kept_workers()
        self._reconcile()
        self._reap()

    # -- fresh workers --------------------------------------------------------------------------

    def _claim(self) -> list[tuple[str, str, LaunchRequest]]:
        """Give queued tasks to warm workers, or claim them for new ones, up to the pool's limit."""
        with transaction(self.sessions) as session:
            free = self.max_workers - worker_service.busy_count(session, POOL)
            if free <= 0:
                return []
            query = (
                select(TaskRow)
                .where(
                    TaskRow.status == TaskStatus.IN_QUEUE.value,
                    TaskRow.worker_name.is_(None),
                    TaskRow.target_worker.is_(None),
                )
                .order_by(TaskRow.created_at)
                .limit(free)
                .with_for_update(skip_locked=True)
            )
            queued = list(session.scalars(query))
            warm = worker_service.idle_warm(session, POOL, since=self.started_at) if queued else []
            return [claim for task in queued if (claim := self._place(session, task, warm)) is not None]

    def _place(self, session: Session, task: TaskRow, warm: list[WorkerRow]) -> tuple[str, str, LaunchRequest] | None:
        config = TaskSpec.model_validate_json(task.spec).worker_config
        size = config.worker_size or DEFAULT_SIZE
        image = config.worker_image or self.backend.default_image
        for worker in warm:
            if (worker.size, worker.image) == (size, image):
                warm.remove(worker)
                worker_service.give_task(session, worker, task)
                return None
        worker, token = worker_service.create_worker(
            session,
            user_id=task.user_id,
            pool=task.pool,
            backend=self.backend.name,
            size=size,
            image=image,
            keep=not task.terminate_on_completion,
        )
        task.worker_name = worker.name
        task.lease_token = secrets.token_hex(8)
        task.lease_expires_at = utcnow() + LEASE
        request = LaunchRequest(worker.name, token, self.control_plane_url, size, image)
        return task.id, task.lease_token, request

    def _warm_up(self) -> list[LaunchRequest]:
        """Keep ``warm_workers`` started workers waiting, so a task need not wait for one to boot."""
        with transaction(self.sessions) as session:
            idle = len(worker_service.idle_warm(session, POOL, since=self.started_at))
            room = self.max_workers - worker_service.busy_count(session, POOL)
            wanted = min(self.warm_workers - idle, max(room, 0))
            requests = []
            for _ in range(wanted):
                worker, token = worker_service.create_worker(
                    session,
                    user_id=None,
                    pool=POOL,
                    backend=self.backend.name,
                    size=DEFAULT_SIZE,
                    image=self.backend.default_image,
                    keep=False,
                )
                requests.append(LaunchRequest(worker.name, token, self.control_plane_url, worker.size, worker.image))
            return requests

    def _launch(self, task_id: str | None, lease: str | None, request: LaunchRequest) -> None:
        try:
            handle = self.backend.launch(request)
        except Exception as exc:
            log.exception("could not start worker %s", request.worker_name)
            self._launch_failed(task_id, lease, request.worker_name, exc)
            return
        with transaction(self.sessions) as session:
            worker = session.get(WorkerRow, request.worker_name)
            worker.handle = json.dumps(handle)
            if task_id is None:
                return
            task = session.get(TaskRow, task_id)
            if task is None or task.lease_token != lease:
                worker_service.mark_terminating(session, worker, reason="its task ended before it started")
            else:
                task.lease_token = task.lease_expires_at = None

    def _launch_failed(self, task_id: str | None, lease: str | None, worker_name: str, exc: Exception) -> None:
        with transaction(self.sessions) as session:
            worker = session.get(WorkerRow, worker_name)
            worker_service.mark_ended(session, worker, WorkerStatus.FAILED, reason=f"could not start: {exc}")
            task = session.get(TaskRow, task_id) if task_id else None
            if task is not None and task.lease_token == lease:
                set_status(session, task, TaskStatus.RUNTIME_ERROR, reason=f"could not start a worker: {exc}")

    # -- kept workers ---------------------------------------------------------------------------

    def _assign_to_kept_workers(self) -> None:
        with transaction(self.sessions) as session:
            query = select(TaskRow).where(
                TaskRow.status == TaskStatus.IN_QUEUE.value,
                TaskRow.worker_name.is_(None),
                TaskRow.target_worker.is_not(None),
            )
            for task in session.scalars(query.order_by(TaskRow.created_at).with_for_update(skip_locked=True)):
                self._assign_one(session, task)

    def _assign_one(self, session: Session, task: TaskRow) -> None:
        worker = session.get(WorkerRow, task.target_worker)
        if worker is None or worker.status not in (
            WorkerStatus.PROVISIONING.value,
            WorkerStatus.RUNNING.value,
        ):
            set_status(session, task, TaskStatus.MACHINE_TERMINATED_IN_QUEUE, reason="its worker has ended")
            return
        if task_service.task_of_worker(session, worker) is None:
            task.worker_name = worker.name
            notify_on_commit(session, worker_key(worker.name))

    # -- faults ---------------------------------------------------------------------------------

    def _reconcile(self) -> None:
        """Find workers that never came up, went silent, or ignore a kill, and stop them."""
        now = utcnow()
        silent_since = max(now - timedelta(seconds=settings.heartbeat_timeout()), self.started_at)
        with transaction(self.sessions) as session:
            for worker in session.scalars(_stale_workers(now - PROVISION_TIMEOUT, silent_since)):
                self._lost(session, worker)
            overdue = now - timedelta(seconds=settings.kill_grace() + KILL_SLACK)
            for task in session.scalars(_unanswered_kills(overdue)):
                set_status(session, task, TaskStatus.KILLED, reason="its worker did not stop it in time; stopped")
                worker_service.release_fresh_worker(session, task, force=True)

    def _lost(self, session: Session, worker: WorkerRow) -> None:
        reason = "it did not start in time" if worker.last_seen_at is None else "its agent went silent"
        worker_service.mark_terminating(session, worker, reason=f"lost: {reason}")
        task = task_service.task_of_worker(session, worker)
        if task is None:
            return
        if task.status == TaskStatus.IN_QUEUE.value:  # it never started: it goes to another worker
            task.worker_name, task.reason = None, f"worker {worker.name} was lost ({reason}); queued again"
            notify_on_commit(session, SCHEDULER)
        else:
            set_status(
                session, task, TaskStatus.TASK_RUNNER_TERMINATED, reason=f"worker {worker.name} was lost: {reason}"
            )

    # -- stopping -------------------------------------------------------------------------------

    def _reap(self) -> None:
        with transaction(self.sessions) as session:
            query = select(WorkerRow.name, WorkerRow.handle).where(WorkerRow.status == WorkerStatus.TERMINATING.value)
            doomed = session.execute(query).all()
        for name, handle in doomed:
            with self._lock:
                if name in self._terminating:
                    continue
                self._terminating.add(name)
            self._terminator.submit(self._terminate, name, handle)

    def _terminate(self, name: str, handle: str | None) -> None:
        try:
            if handle is not None:
                self.backend.terminate(json.loads(handle))
            with transaction(self.sessions) as session:
                worker = session.get(WorkerRow, name)
                worker_service.mark_ended(session, worker, WorkerStatus.TERMINATED)
        except Exception:
            log.exception("could not terminate worker %s; will retry", name)
        finally:
            with self._lock:
                self._terminating.discard(name)


def _stale_workers(provision_deadline, silent_since):
    never_up = (
        (WorkerRow.status == WorkerStatus.PROVISIONING.value)
        & WorkerRow.last_seen_at.is_(None)
        & (WorkerRow.created_at < provision_deadline)
    )
    silent = (WorkerRow.status == WorkerStatus.RUNNING.value) & (WorkerRow.last_seen_at < silent_since)
    return select(WorkerRow).where(never_up | silent).with_for_update(skip_locked=True)


def _unanswered_kills(overdue):
    pending = (TaskRow.status == TaskStatus.PENDING_KILL.value) & (TaskRow.status_at < overdue)
    return select(TaskRow).where(pending).with_for_update(skip_locked=True)
