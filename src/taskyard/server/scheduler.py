"""The scheduler: claims queued tasks in short transactions, launches workers outside them.

A claim writes a lease (token + expiry) on the task. Slow work (starting or stopping a worker)
happens with no transaction open, and its result is applied only where the lease still holds;
otherwise what was started is stopped again.

Each pool names its backend, and every call to a backend runs on that backend's own
:class:`~taskyard.server.lanes.Lane`, never on the scheduler's thread: a slow or hung backend
holds up only its own pools, whose tasks say why they wait.
"""

from __future__ import annotations

import functools
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol

from sqlalchemy import ColumnElement, bindparam, or_, select, text
from sqlalchemy.orm import Session, sessionmaker

from taskyard import settings
from taskyard.backends.base import Backend, BackendWithProvisioning, LaunchRequest, Resources, WorkerState
from taskyard.config import WorkerConfig
from taskyard.errors import TaskyardError
from taskyard.models import PoolSpec, TaskSpec
from taskyard.server.admission import Ledger, Need
from taskyard.server.db.group_commit import GroupCommit
from taskyard.server.db.models import TaskRow, WorkerRow, utcnow
from taskyard.server.db.session import transaction
from taskyard.server.lanes import Lane
from taskyard.server.notifier import SCHEDULER, Notifier, assignment_key
from taskyard.server.services import pools, provisioning, worker_requests
from taskyard.server.services import tasks as task_service
from taskyard.server.services import workers as worker_service
from taskyard.server.services.lifecycle import notify_on_commit, request_stop, set_status, stop_ending
from taskyard.server.services.users import hash_token, new_token
from taskyard.server.worker_tokens import WorkerTokens
from taskyard.status import ACTIVE_VALUES, TaskStatus, WorkerStatus

log = logging.getLogger("taskyard.scheduler")

MIN_GAP = 0.005  # seconds from the start of one pass to the next, however often the scheduler is woken
RECONCILE_EVERY = 0.5  # seconds between looks for lost workers, timeouts and unanswered kills
POLL_EVERY = 1.0  # seconds between asking the backend which workers still exist
KILL_SLACK = 5.0  # seconds past the kill grace before the control plane stops a worker itself
WARM_BACKOFF = 10.0  # seconds without warm workers after one could not be started
STOPPED_BEFORE_LAUNCH = "the server that claimed it stopped before launching it"  # a lapsed claim's reason


class Sizes(Protocol):
    """The worker sizes of the server's configuration (``taskyard.server.config.ServerConfig``)."""

    def size(self, name: str) -> tuple[str, Any]: ...  # (canonical name, a size with cpu, memory, gpu)

    def default_size(self) -> str: ...


class Scheduler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        notifier: Notifier,
        backends: Backend | Mapping[str, Lane],
        *,
        max_workers: int,
        sizes: Sizes,
        warm_workers: int | None = None,
        on_worker_ended: Callable[[str], None] | None = None,
        default_backend: str | None = None,
    ) -> None:
        """``backends``: each backend's lane by name (one Backend: its own lane, under its name).

        ``default_backend`` is the default pool's (None: the only one, or ``local``).
        """
        self.sessions = sessions
        self.on_worker_ended = on_worker_ended or (lambda name: None)  # told each worker it has terminated
        self.notifier = notifier
        self.lanes = {backends.name: Lane(backends.name, backends)} if isinstance(backends, Backend) else dict(backends)
        self.default_backend = default_backend or (next(iter(self.lanes)) if len(self.lanes) == 1 else "local")
        self.sizes = sizes
        self.max_workers = max_workers
        self.warm_workers = settings.warm_workers() if warm_workers is None else warm_workers
        self.started_at = utcnow()
        self._polled_at = self._reconciled_at = self._collected_at = self.started_at
        self.control_plane_url = ""
        self.agent_urls: Callable[[], str] = lambda: self.control_plane_url  # what workers are launched with
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._terminating: set[str] = set()
        self._ended_lately: set[str] = set()  # stopped since the live workers were last read (see _reap)
        self._lock = threading.Lock()
        self.worker_tokens = WorkerTokens()  # each launched worker's token: its agent's calls skip the lookup
        self._commits = GroupCommit(sessions)  # the lanes' writes: a start's handle, a stop's end

    def start(self, control_plane_url: str, agent_urls: Callable[[], str] | None = None) -> None:
        """Schedule on a thread of its own; workers call ``control_plane_url``.

        ``agent_urls``: on PostgreSQL, every live server's URL (comma-separated, this one's first) for
        each worker launched from now on, so that its agent can call another server when this one dies.
        """
        self.control_plane_url = control_plane_url
        if agent_urls is not None:
            self.agent_urls = agent_urls
        self._thread = threading.Thread(target=self._run, name="taskyard-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop scheduling and the idle warm workers; workers with a task go on and report later."""
        self._stop.set()
        self.notifier.notify(SCHEDULER)
        if self._thread is not None:
            self._thread.join(timeout=10)
        with transaction(self.sessions) as session:
            live = self._live(session)
            for worker in live:
                if worker.user_id is None and worker.status in worker_service.RUNNABLE:  # idle warm
                    worker_service.mark_terminating(session, worker, reason="the control plane stopped")
        self._reap(_doomed(live))
        for lane in self.lanes.values():
            lane.close()

    @property
    def backend(self) -> Backend:
        """The default pool's backend."""
        return self.lanes[self.default_backend].backend

    def lane(self, pool: PoolSpec) -> Lane | None:
        """The lane of the pool's backend; None when the configuration no longer has that backend."""
        return self.lanes.get(self.default_backend if pool.name == pools.DEFAULT else pool.backend)

    def fault(self, backend: str) -> str | None:
        """What is wrong with the backend called ``backend`` now, for people; None when it answers."""
        lane = self.lanes.get(backend)
        return "not configured on this server" if lane is None else lane.fault()

    def _run(self) -> None:
        while not self._stop.is_set():
            began = time.monotonic()
            try:
                self.tick()
            except Exception:
                log.exception("scheduler pass failed; retrying")
            took = time.monotonic() - began
            self.notifier.wait_blocking(SCHEDULER, RECONCILE_EVERY)
            self._stop.wait(began + _gap(took) - time.monotonic())  # a burst of wake-ups makes one pass

    def tick(self) -> None:
        """One pass: place queued tasks, keep warm workers, stop ended ones; look for faults now and then.

        The placing is one short transaction; starting and stopping workers happen after it.
        """
        with transaction(self.sessions) as session:
            _serialize_placing(session)
            specs = pools.all_specs(session)
            live = self._live(session)
            ledgers: dict[str, Ledger] = {}
            starts: list[tuple[Lane, str | None, str | None, LaunchRequest]] = []
            for pool in specs:
                lane = self.lane(pool)
                if lane is None or lane.stalled():  # its tasks wait; the reason is on their pool
                    continue
                if lane.name not in ledgers:
                    ledgers[lane.name] = self.ledger(live, lane)
                ledger = ledgers[lane.name]
                starts += [(lane, None, None, r) for r in self._start_requested(session, pool, live, ledger, lane)]
                pool_claims, pool_warm = self._fill(session, pool, live, ledger)
                starts += [(lane, task_id, lease, request) for task_id, lease, request in pool_claims]
                starts += [(lane, None, None, request) for request in pool_warm]
            self._assign_to_kept_workers(session)
        doomed = _doomed(live)
        for lane, task_id, lease, request in starts:
            self._start(lane, task_id, lease, request)
        now = utcnow()
        if (now - self._reconciled_at).total_seconds() >= RECONCILE_EVERY:
            self._reconciled_at = now
            self._reconcile(specs)
        self._reap(doomed)

    # -- fresh workers --------------------------------------------------------------------------

    def _fill(
        self, session: Session, pool: PoolSpec, live: list[WorkerRow], ledger: Ledger
    ) -> tuple[list[tuple[str, str, LaunchRequest]], list[LaunchRequest]]:
        """Place the pool's queued tasks within its limit and what is left, then top up its warm workers.

        The warm workers are started beside those running tasks, not within their limit: with every place
        taken, the next task goes to one the moment a place is freed instead of waiting for a worker to boot.
        """
        workers = [worker for worker in live if worker.pool == pool.name]
        warm = worker_service.idle_warm(workers, pool.name, since=self.started_at)
        free = self._max_workers(pool) - sum(1 for worker in workers if worker_service.is_busy(worker))
        claims = self._claim(session, pool, free, warm, ledger)
        return claims, self._warm_up(session, pool, idle=len(warm), ledger=ledger)

    def _claim(
        self, session: Session, pool: PoolSpec, free: int, warm: list[WorkerRow], ledger: Ledger
    ) -> list[tuple[str, str, LaunchRequest]]:
        """Give up to ``free`` queued tasks to ``warm`` workers (taken from the list), or claim them for new ones.

        A task whose size does not fit what is left now waits In Queue. Returns the claims for new workers.
        """
        if free <= 0:
            return []
        queued = list(session.scalars(_QUEUED, {"pool": pool.name, "free": free}))
        if queued and warm and _on_postgresql(session):  # peers may share these workers; SQLite has one server
            warm[:] = _still_warm(session, warm)
        outcomes = [self._place(session, pool, task, warm, ledger) for task in queued]
        return [outcome for outcome in outcomes if isinstance(outcome, tuple)]

    def ledger(self, live: list[WorkerRow], lane: Lane | None = None) -> Ledger:
        """What a backend (the default one) has left, as its ``live`` workers hold it, for one pass."""
        lane = lane or self.lanes[self.default_backend]
        return Ledger(lane.backend.capacity(), [w for w in live if w.backend == lane.name], self._need)

    def _max_workers(self, pool: PoolSpec) -> int:
        return self.max_workers if pool.name == pools.DEFAULT else pool.max_workers

    def _warm_target(self, pool: PoolSpec) -> int:
        return self.warm_workers if pool.name == pools.DEFAULT else pool.warm_workers

    def _shape(self, pool: PoolSpec, config: WorkerConfig) -> tuple[str, str]:
        config = pools.effective_config(pool, config)
        size, _ = self.sizes.size(config.worker_size or self.sizes.default_size())
        lane = self.lane(pool)
        return size, config.worker_image or (lane or self.lanes[self.default_backend]).backend.default_image

    def _need(self, size_name: str) -> Need:
        try:
            _, size = self.sizes.size(size_name)
        except TaskyardError:  # a size no longer in the configuration: it holds what it was given
            return Need(0.0, 0)
        return Need(size.cpu, size.memory, size.gpu)

    def _resources(self, size: str, gpus: tuple[str, ...]) -> Resources:
        need = self._need(size)
        return Resources(cpu=need.cpu, memory=need.memory, gpus=gpus)

    def _place(
        self, session: Session, pool: PoolSpec, task: TaskRow, warm: list[WorkerRow], ledger: Ledger
    ) -> tuple[str, str, LaunchRequest] | bool:
        """Give ``task`` a warm worker (True), claim a new one (the claim), or leave it queued (False)."""
        size, image = self._shape(pool, TaskSpec.model_validate_json(task.spec).worker_config)
        worker = next((w for w in warm if (w.size, w.image) == (size, image)), None)
        if worker is not None:
            if ledger.reserve(self._need(size), gpus=False) is None:
                return False
            warm.remove(worker)
            worker_service.give_task(session, worker, task)
            return True
        gpus = ledger.reserve(self._need(size))
        return False if gpus is None else self._claim_new(session, pool, task, size, image, gpus)

    def _claim_new(
        self, session: Session, pool: PoolSpec, task: TaskRow, size: str, image: str, gpus: tuple[str, ...]
    ) -> tuple[str, str, LaunchRequest]:
        """A new worker for ``task``, leased to it until its launch is applied."""
        worker, token = worker_service.create_worker(
            session,
            user_id=task.user_id,
            pool=pool.name,
            backend=self._backend_name(pool),
            size=size,
            image=image,
            gpus=gpus,
            keep=not task.terminate_on_completion,
        )
        task.worker_name = worker.name
        task.lease_token = secrets.token_hex(8)
        task.lease_expires_at = utcnow() + timedelta(seconds=settings.claim_seconds())
        request = LaunchRequest(worker.name, token, self.agent_urls(), size, image, self._resources(size, gpus))
        return task.id, task.lease_token, request

    def _warm_up(self, session: Session, pool: PoolSpec, *, idle: int, ledger: Ledger) -> list[LaunchRequest]:
        """Keep the pool's warm workers started and waiting, so a task need not wait for one to boot."""
        size, image = self._shape(pool, WorkerConfig())
        requests: list[LaunchRequest] = []
        lane = self.lane(pool)
        if lane is None or time.monotonic() < lane.warm_after:
            return requests
        for _ in range(self._warm_target(pool) - idle):
            gpus = ledger.reserve(self._need(size), compute=False)
            if gpus is None:
                break
            worker, token = worker_service.create_worker(
                session, user_id=None, pool=pool.name, backend=lane.name, size=size, image=image,
                gpus=gpus, keep=False,
            )
            resources = self._resources(size, gpus)
            requests.append(LaunchRequest(worker.name, token, self.agent_urls(), size, image, resources))
        return requests

    def _backend_name(self, pool: PoolSpec) -> str:
        return self.default_backend if pool.name == pools.DEFAULT else pool.backend

    def _start(self, lane: Lane, task_id: str | None, lease: str | None, request: LaunchRequest) -> None:
        """Launch on the backend's lane; a launch past its timeout gives the task back to the queue."""
        lane.submit(
            f"start of worker {request.worker_name}",
            lambda: self._launch(task_id, lease, request, lane),
            on_timeout=lambda: self._launch_timed_out(lane, task_id, lease, request.worker_name),
            first=True,
        )

    def _launch(self, task_id: str | None, lease: str | None, request: LaunchRequest, lane: Lane | None = None) -> None:
        """Start the worker (blocking, on the backend's lane) and record its handle where it is still wanted."""
        lane = lane or self.lanes[self.default_backend]
        self.worker_tokens.put(request.agent_token, request.worker_name)
        try:
            handle = lane.backend.launch(request)
        except Exception as exc:
            log.exception("could not start worker %s", request.worker_name)
            lane.failed(f"start of worker {request.worker_name}", exc)
            self._launch_failed(lane, task_id, lease, request.worker_name, exc)
            return
        lane.answered()
        if not self._launched(task_id, lease, request.worker_name, handle):
            lane.backend.terminate(handle)  # given up while it started: nothing waits for it

    def _launched(self, task_id: str | None, lease: str | None, worker_name: str, handle: dict) -> bool:
        """Store the handle; False when the worker was given up meanwhile (its launch timed out).

        Statements alone, committed with the other lanes' (every launch and stop comes through here)."""

        def store(session: Session) -> bool:
            if not worker_service.store_handle(session, worker_name, handle):
                return False
            if task_id is not None and not task_service.release_lease(session, task_id, lease):
                worker = _worker(session, worker_name)
                worker_service.mark_terminating(session, worker, reason="its task ended before it started")
            return True

        return self._commits.run(store)

    def _launch_failed(
        self, lane: Lane, task_id: str | None, lease: str | None, worker_name: str, exc: Exception
    ) -> None:
        if task_id is None:  # a warm worker: no more of them for a while, lest a lasting fault spin
            lane.warm_after = time.monotonic() + WARM_BACKOFF
        with transaction(self.sessions) as session:
            worker = _worker(session, worker_name)
            worker_service.mark_ended(session, worker, WorkerStatus.FAILED, reason=f"could not start: {exc}")
            task = session.get(TaskRow, task_id) if task_id else None
            if task is not None and task.lease_token == lease:
                reason = f"could not start a worker on backend {lane.name}: {exc}"
                set_status(session, task, TaskStatus.RUNTIME_ERROR, reason=reason)

    def _launch_timed_out(self, lane: Lane, task_id: str | None, lease: str | None, worker_name: str) -> None:
        """The backend did not start the worker in time: it is given up, and its task waits for another."""
        why = f"backend {lane.name} did not start worker {worker_name} within {lane.timeout:g} s"
        lane.warm_after = time.monotonic() + WARM_BACKOFF
        with transaction(self.sessions) as session:
            worker = _worker(session, worker_name, for_update=True)
            if worker.status in worker_service.LIVE and worker.handle is None:
                worker_service.mark_ended(session, worker, WorkerStatus.FAILED, reason=f"could not start: {why}")
            task = session.get(TaskRow, task_id) if task_id else None
            if task is not None and task.lease_token == lease and task.status == TaskStatus.IN_QUEUE.value:
                task.worker_name = task.lease_token = task.lease_expires_at = None
                task.reason = f"{why}; waiting In Queue until it answers"
                notify_on_commit(session, SCHEDULER)

    # -- workers made on request ----------------------------------------------------------------

    def _start_requested(
        self, session: Session, pool: PoolSpec, live: list[WorkerRow], ledger: Ledger, lane: Lane
    ) -> list[LaunchRequest]:
        """Start the workers users asked for with no task (oldest first), within the pool's limit and
        what the backend has left; the others wait, Provisioning and holding nothing.

        They are among the ``live`` workers: where none of them is, there is nothing to look up (and lock)."""
        if not any(worker.requested and worker.pool == pool.name for worker in live):
            return []
        busy = sum(1 for worker in live if worker.pool == pool.name and worker_service.is_busy(worker))
        requests: list[LaunchRequest] = []
        for worker in worker_requests.waiting(session, pool.name):
            if busy >= self._max_workers(pool):
                break
            gpus = ledger.reserve(self._need(worker.size))
            if gpus is None:
                break
            requests.append(self._start_one(worker, gpus, lane))
            busy += 1
        return requests

    def _start_one(self, worker: WorkerRow, gpus: tuple[str, ...], lane: Lane) -> LaunchRequest:
        """The launch of a requested worker; it now counts as busy, and has its agent token (stored hashed)."""
        token = new_token()
        worker.token_hash, worker.requested, worker.backend = hash_token(token), False, lane.name
        worker.gpus, worker.created_at = ",".join(gpus) or None, utcnow()  # its start: the provisioning clock
        resources = self._resources(worker.size, gpus)
        return LaunchRequest(worker.name, token, self.agent_urls(), worker.size, worker.image, resources)

    def _expire_requested(self, session: Session) -> None:
        """Stop the requested workers whose time to live has passed; a task running there ends with them."""
        for worker in worker_requests.expired(session):
            task = task_service.task_of_worker(session, worker)
            if task is not None and task.status != TaskStatus.IN_QUEUE.value:
                reason = f"its worker {worker.name} reached its time to live"
                set_status(session, task, TaskStatus.MACHINE_TIME_LIMIT_REACHED, reason=reason)
            worker_service.mark_terminating(session, worker, reason="reached its time to live")

    # -- kept workers ---------------------------------------------------------------------------

    def _assign_to_kept_workers(self, session: Session) -> None:
        tasks = session.scalars(_FOR_KEPT)
        waiting = [t for t in tasks if t.status == TaskStatus.IN_QUEUE.value and t.worker_name is None]
        for task in sorted(waiting, key=lambda t: t.created_at):
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
            notify_on_commit(session, assignment_key(worker.name))

    # -- faults ---------------------------------------------------------------------------------

    def _reconcile(self, specs: list[PoolSpec]) -> None:
        """Find workers that never came up, went silent, died or outlived their pool's TTL; stop overdue tasks."""
        now = utcnow()
        silent_since = now - timedelta(seconds=settings.heartbeat_timeout())
        if silent_since < self.started_at:
            silent_since = datetime.min.replace(tzinfo=timezone.utc)  # just (re)started: agents get time to call back
        with transaction(self.sessions) as session:
            for worker in session.scalars(_stale_workers(self._late_to_start(now), silent_since)):
                self._lost(session, worker)
            self._expire_requested(session)
            for pool in specs:
                if pool.time_to_live is not None:
                    self._expire(session, pool, now - timedelta(seconds=pool.time_to_live))
            for task in session.scalars(_past_deadline(now)):
                request_stop(session, task, "timeout")
            self._repair_orphans(session)
            self._take_over_claims(session, now)
            overdue = now - timedelta(seconds=settings.kill_grace() + KILL_SLACK)
            for task in session.scalars(_unanswered_stops(overdue)):
                set_status(session, task, stop_ending(task), reason="its worker did not stop it in time; stopped")
                worker_service.release_fresh_worker(session, task, force=True)
        self._poll_backend(now)

    def _late_to_start(self, now: datetime) -> ColumnElement[bool]:
        """Workers launched longer ago than their backend's provisioning timeout (or the server's)."""

        def before(seconds: float) -> ColumnElement[bool]:
            return WorkerRow.created_at < now - timedelta(seconds=seconds)

        known = [(WorkerRow.backend == name) & before(self._provision_timeout(name)) for name in self.lanes]
        return or_(*known, WorkerRow.backend.not_in(list(self.lanes)) & before(provisioning.timeout(None)))

    def _provision_timeout(self, backend: str) -> float:
        lane = self.lanes.get(backend)
        return provisioning.timeout(lane.backend if lane is not None else None)

    def _repair_orphans(self, session: Session) -> None:
        """Tasks In Queue whose worker has ended (which no task should ever be): queued again, or ended.

        A task for a fresh worker goes back to the queue; one sent to a given kept worker ends
        Machine Terminated in Queue, as when that worker ends before it is given the task.
        """
        for task, worker in session.execute(_ORPHANS):
            reason = f"its worker {worker} had ended"
            if task.target_worker is not None:
                set_status(session, task, TaskStatus.MACHINE_TERMINATED_IN_QUEUE, reason=reason)
                continue
            task.worker_name, task.lease_token, task.lease_expires_at = None, None, None
            task.reason = f"{reason}; queued again"
            log.warning("task %s was In Queue on ended worker %s; queued again", task.id, worker)
            notify_on_commit(session, SCHEDULER)

    def _take_over_claims(self, session: Session, now: datetime) -> None:
        """Claims whose lease ran out while their worker was neither started nor heard from: the server
        that made them stopped before launching it (on PostgreSQL, any server of the database may
        have). The worker is given up and the task waits In Queue for another.

        A server alive but slow that starts the worker after all finds it given up in :meth:`_launched`
        and stops it again: the task runs once, on the worker it gets next.
        """
        for task, worker in session.execute(_LAPSED_CLAIMS, {"now": now}):
            worker_service.mark_ended(session, worker, WorkerStatus.FAILED, reason=STOPPED_BEFORE_LAUNCH)
            task.worker_name = task.lease_token = task.lease_expires_at = None
            task.reason = f"worker {worker.name}: {STOPPED_BEFORE_LAUNCH}; queued again"
            log.warning("task %s: the claim of worker %s lapsed unlaunched; queued again", task.id, worker.name)
            notify_on_commit(session, SCHEDULER)

    def _expire(self, session: Session, pool: PoolSpec, born_before) -> None:
        query = select(WorkerRow).where(
            WorkerRow.pool == pool.name,
            WorkerRow.status.in_(worker_service.RUNNABLE),
            WorkerRow.created_at < born_before,
        )
        for worker in session.scalars(query.with_for_update(skip_locked=True)):
            task = task_service.task_of_worker(session, worker)
            if task is not None and task.status != TaskStatus.IN_QUEUE.value:
                reason = f"its worker reached the pool's time limit of {pool.time_to_live:g} s"
                set_status(session, task, TaskStatus.MACHINE_TIME_LIMIT_REACHED, reason=reason)
            elif task is not None:
                task.worker_name = None  # it had not started: it waits for another worker
            worker_service.mark_terminating(session, worker, reason="reached the pool's time limit")

    def _poll_backend(self, now) -> None:
        """Ask each backend about its live workers now and then: a worker gone or reclaimed is lost at once."""
        for lane in self.lanes.values():
            lane.check()
        if (now - self._polled_at).total_seconds() < POLL_EVERY:
            return
        self._polled_at = now
        self._collect_garbage(now)
        with transaction(self.sessions) as session:
            query = select(WorkerRow.name, WorkerRow.handle, WorkerRow.backend, WorkerRow.status).where(
                WorkerRow.status.in_(worker_service.RUNNABLE), WorkerRow.handle.is_not(None)
            )
            live = [(name, handle, backend, status) for name, handle, backend, status in session.execute(query)]
        for lane in self.lanes.values():
            self._poll_lane(lane, live)

    def _poll_lane(self, lane: Lane, live: list[tuple[str, str | None, str, str]]) -> None:
        """Poll a backend's running workers, and those not yet up where it tells why they wait."""
        mine = [(name, json.loads(handle), status) for name, handle, backend, status in live
                if backend == lane.name and handle]
        running = {name: handle for name, handle, status in mine if status == WorkerStatus.RUNNING.value}
        if running and not lane.pending("poll"):
            lane.submit("poll", functools.partial(self._poll, lane, running))
        if not isinstance(lane.backend, BackendWithProvisioning) or lane.pending("provisioning poll"):
            return
        starting = {name: handle for name, handle, status in mine if status != WorkerStatus.RUNNING.value}
        if starting:
            lane.submit("provisioning poll", functools.partial(self._poll_provisioning, lane, lane.backend, starting))

    def _collect_garbage(self, now) -> None:
        """Now and then, each backend removes what it holds for workers this store no longer has live."""
        if (now - self._collected_at).total_seconds() < settings.garbage_seconds():
            return
        self._collected_at = now
        for lane in self.lanes.values():
            if not lane.pending("garbage"):
                lane.submit("garbage", functools.partial(self._collect, lane))

    def _collect(self, lane: Lane) -> None:
        removed = lane.backend.collect_garbage(functools.partial(self._live_names, lane.name))
        if removed:
            log.info("backend %s: removed what was left of gone workers: %s", lane.name, ", ".join(removed))

    def _live_names(self, backend: str) -> set[str]:
        with transaction(self.sessions) as session:
            live = WorkerRow.status.in_(worker_service.LIVE)
            return set(session.scalars(select(WorkerRow.name).where(WorkerRow.backend == backend, live)))

    def _poll(self, lane: Lane, handles: dict[str, dict]) -> None:
        """Poll the workers of one backend (on its lane) and lose those it no longer runs."""
        states = _ask(lane, "poll", lane.backend.poll, handles)
        with transaction(self.sessions) as session:
            for name, state in states.items():
                worker = _worker(session, name, for_update=True)
                if state is not WorkerState.RUNNING and worker.status == WorkerStatus.RUNNING.value:
                    self._lost(session, worker, state)

    def _poll_provisioning(self, lane: Lane, backend: BackendWithProvisioning, handles: dict[str, dict]) -> None:
        """Ask a backend why its workers not yet up wait (on its lane): shown to the user; those gone are lost."""
        said = _ask(lane, "provisioning poll", backend.provisioning, handles)
        with transaction(self.sessions) as session:
            for name, what in said.items():
                worker = _worker(session, name, for_update=True)
                if worker.status != WorkerStatus.PROVISIONING.value:
                    continue  # its agent called in meanwhile, or it is being stopped
                if what.state in (WorkerState.GONE, WorkerState.PREEMPTED):
                    self._lost(session, worker, what.state, what.message)
                else:
                    provisioning.show(session, worker, what.message)

    def _lost(
        self, session: Session, worker: WorkerRow, state: WorkerState | None = None, message: str | None = None
    ) -> None:
        reason, ending = self._why_lost(worker, state, message)
        worker.reason = None  # what its backend said while it waited (if anything) is part of ``reason`` now
        worker_service.mark_terminating(session, worker, reason=f"lost: {reason}")
        task = task_service.task_of_worker(session, worker)
        if task is None:
            return
        if task.status == TaskStatus.IN_QUEUE.value and task.target_worker is not None:  # sent to this very worker
            reason = f"worker {worker.name} was lost: {reason}"
            set_status(session, task, TaskStatus.MACHINE_TERMINATED_IN_QUEUE, reason=reason)
        elif task.status == TaskStatus.IN_QUEUE.value:  # it never started: it goes to another worker
            task.worker_name, task.reason = None, f"worker {worker.name} was lost ({reason}); queued again"
            notify_on_commit(session, SCHEDULER)
        else:
            task_service.end_on_lost_worker(session, task, ending, f"worker {worker.name} was lost: {reason}")

    def _why_lost(self, worker: WorkerRow, state: WorkerState | None, message: str | None) -> tuple[str, TaskStatus]:
        """Why a worker is lost, with its backend's message, and how a task it ran ends."""
        ending = TaskStatus.TASK_RUNNER_TERMINATED
        if state is WorkerState.PREEMPTED:
            reason, ending = "its machine was reclaimed by the provider", TaskStatus.SPOT_RECLAIMED
        elif state is WorkerState.GONE:
            reason = "its worker disappeared"
        elif worker.last_seen_at is None:  # never called in: its backend's last word on why, if it said one
            message = message or (worker.reason if worker.status == WorkerStatus.PROVISIONING.value else None)
            timeout = self._provision_timeout(worker.backend)
            reason = f"it did not start within {timeout:g} s" if message else "it did not start in time"
        else:
            reason = "its agent went silent"
        return (f"{reason}: {message}" if message else reason), ending

    # -- stopping -------------------------------------------------------------------------------

    def _live(self, session: Session) -> list[WorkerRow]:
        """The live workers, for a pass to reap those it finds Terminating (see :meth:`_reap`)."""
        with self._lock:
            self._ended_lately.clear()
        return worker_service.live_workers(session)

    def _reap(self, doomed: list[tuple[str, str | None, str]]) -> None:
        """Stop the given workers (name, handle, backend) on their backends' lanes, each once at a time.

        ``doomed`` is what :meth:`_live` read: a worker whose stop ended since then is not stopped again. A pass
        reaps after its transaction, and a stop can end in between (on PostgreSQL, with its slower passes,
        nearly every worker was stopped twice: a second call to its backend and a second UPDATE)."""
        for name, handle, backend in doomed:
            lane = self.lanes.get(backend)
            with self._lock:
                if name in self._terminating or name in self._ended_lately:
                    continue
                self._terminating.add(name)
            if lane is None:  # its backend left the configuration: nothing here can stop it
                log.warning("worker %s is on backend %s, which is not configured; marked ended", name, backend)
                self._terminate(None, name, None)
            else:
                lane.submit(f"stop of worker {name}", functools.partial(self._terminate, lane, name, handle))

    def _terminate(self, lane: Lane | None, name: str, handle: str | None) -> None:
        try:
            if handle is not None and lane is not None:
                self._stop_worker(lane, name, json.loads(handle))
            self._commits.run(lambda session: worker_service.end_worker(session, name, WorkerStatus.TERMINATED))
            with self._lock:
                self._ended_lately.add(name)
            self.on_worker_ended(name)
        except Exception:
            log.exception("could not terminate worker %s; will retry", name)
        finally:
            with self._lock:
                self._terminating.discard(name)

    def _stop_worker(self, lane: Lane, name: str, handle: dict) -> None:
        try:
            lane.backend.terminate(handle)
        except Exception as exc:
            lane.failed(f"stop of worker {name}", exc)
            raise
        lane.answered()


def _gap(took: float) -> float:
    """Seconds from the start of a pass that took ``took`` to the start of the next, at the least: passes
    take at most half the scheduler's time. Under load a pass is slow (it waits for the database and for
    the threads that answer agents), and each one costs much however few tasks it places: the next waits
    as long, and places what has come meanwhile."""
    return max(MIN_GAP, 2 * took)


PLACING_LOCK = 0x7461736B  # the PostgreSQL advisory lock a placing pass holds: one server places at a time


def _serialize_placing(session: Session) -> None:
    """On PostgreSQL, wait for another server's placing pass to commit: pool limits and capacity hold across servers.

    The pass is one short transaction; tasks are still claimed with ``SKIP LOCKED`` and leases."""
    if _on_postgresql(session):
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": PLACING_LOCK})


def _on_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _still_warm(session: Session, warm: list[WorkerRow]) -> list[WorkerRow]:
    """The ``warm`` workers still idle, now locked for this pass: another server gives none of them a task too."""
    query = (
        select(WorkerRow)
        .where(
            WorkerRow.name.in_([worker.name for worker in warm]),
            WorkerRow.user_id.is_(None),
            WorkerRow.status.in_(worker_service.RUNNABLE),
        )
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    held = {worker.name for worker in session.scalars(query)}
    return [worker for worker in warm if worker.name in held]


def _ask(lane: Lane, what: str, call: Callable[[dict], Any], handles: dict[str, dict]) -> dict[str, Any]:
    """``call`` of each worker's handle (on the backend's lane), the lane told whether its backend answered."""
    try:
        answers = {name: call(handle) for name, handle in handles.items()}
    except Exception as exc:
        lane.failed(what, exc)
        raise
    lane.answered()
    return answers


def _worker(session: Session, name: str, *, for_update: bool = False) -> WorkerRow:
    """A worker the scheduler made: its row is there, as worker rows are never deleted."""
    worker = session.get(WorkerRow, name, with_for_update=for_update)
    if worker is None:
        raise LookupError(f"worker {name} has no row")
    return worker


def _stale_workers(late_to_start: ColumnElement[bool], silent_since):
    never_up = (
        (WorkerRow.status == WorkerStatus.PROVISIONING.value)
        & WorkerRow.last_seen_at.is_(None)
        & WorkerRow.requested.is_(False)  # one waiting for room is not started yet: it cannot be late
        & late_to_start
    )
    silent = (WorkerRow.status == WorkerStatus.RUNNING.value) & (WorkerRow.last_seen_at < silent_since)
    return select(WorkerRow).where(never_up | silent).with_for_update(skip_locked=True)


def _unanswered_stops(overdue):
    late = TaskRow.stop_reason.is_not(None) & TaskRow.status.in_(ACTIVE_VALUES) & (TaskRow.stop_requested_at < overdue)
    return select(TaskRow).where(late).with_for_update(skip_locked=True)


def _past_deadline(now):
    late = (
        (TaskRow.status == TaskStatus.IN_PROGRESS.value) & (TaskRow.deadline_at < now) & TaskRow.stop_reason.is_(None)
    )
    return select(TaskRow).where(late).with_for_update(skip_locked=True)


def _doomed(live: list[WorkerRow]) -> list[tuple[str, str | None, str]]:
    """The workers being torn down, as (name, handle, backend)."""
    terminating = WorkerStatus.TERMINATING.value
    return [(worker.name, worker.handle, worker.backend) for worker in live if worker.status == terminating]


_QUEUED = (
    select(TaskRow)
    .where(
        TaskRow.status == TaskStatus.IN_QUEUE.value,
        TaskRow.worker_name.is_(None),
        TaskRow.pool == bindparam("pool"),
        TaskRow.target_worker.is_(None),
    )
    .order_by(TaskRow.created_at, TaskRow.id)
    .limit(bindparam("free"))
    .with_for_update(skip_locked=True)
)
# Tasks In Queue that name a worker which has ended: a state to repair (see Scheduler._repair_orphans).
# ``worker_name > ''`` (a range, not IS NOT NULL): the queued tasks with a worker, found through the
# queue's index, not by walking the whole queue every reconcile.
_ORPHANS = (
    select(TaskRow, WorkerRow.name)
    .join(WorkerRow, WorkerRow.name == TaskRow.worker_name)
    .where(
        TaskRow.status == TaskStatus.IN_QUEUE.value,
        TaskRow.worker_name > "",
        WorkerRow.status.in_((WorkerStatus.TERMINATED.value, WorkerStatus.FAILED.value)),
    )
    .with_for_update(of=TaskRow, skip_locked=True)
)
# Tasks claimed for a new worker whose lease ran out before it was launched or called in (_take_over_claims).
_LAPSED_CLAIMS = (
    select(TaskRow, WorkerRow)
    .join(WorkerRow, WorkerRow.name == TaskRow.worker_name)
    .where(
        TaskRow.status == TaskStatus.IN_QUEUE.value,
        TaskRow.lease_token.is_not(None),
        TaskRow.lease_expires_at < bindparam("now"),
        WorkerRow.handle.is_(None),
        WorkerRow.last_seen_at.is_(None),
        WorkerRow.status.in_(worker_service.LIVE),
    )
    .with_for_update(skip_locked=True)
)
# Tasks sent to a given worker, found through their own index (the queue may be long, they are few).
# A range, not IS NOT NULL, and nothing else to filter or sort by: SQLite would use another index.
_FOR_KEPT = select(TaskRow).where(TaskRow.target_worker > "").with_for_update(skip_locked=True)
