"""The control plane's side of the agent protocol. An agent reaches only its own worker's tasks."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import bindparam, exists, select
from sqlalchemy.orm import Session

from taskyard import notebook_task, settings
from taskyard.agent import kinds
from taskyard.config import GitConfig
from taskyard.errors import Conflict, NotFound, Unauthorized
from taskyard.models import AgentCommands, AgentEvent, AgentFinish, AgentLogs, Assignment, NextTask, TaskSpec
from taskyard.server.db.models import TaskRow, WorkerRow, utcnow
from taskyard.server.services import logs, pools, provisioning, worker_commands, worker_requests, workers
from taskyard.server.services import secrets as secret_service
from taskyard.server.services import tasks as task_service
from taskyard.server.services.lifecycle import set_status, stop_ending
from taskyard.server.services.users import hash_token
from taskyard.server.storage import bundle_key
from taskyard.server.vault import Vault
from taskyard.status import ACTIVE_VALUES, TaskStatus, WorkerStatus

AGENT_STATUSES = (TaskStatus.IN_PROGRESS, TaskStatus.FINALIZING)
TOUCH_EVERY = 1.0  # seconds: how fresh a worker's last_seen_at is kept, at most (see touch)
INLINE_BUNDLE = 256 * 1024  # bundles up to this size travel with the assignment: one round trip less


REFUSED = "this agent token is not valid (or its worker has ended)"


def authenticate(session: Session, token: str) -> WorkerRow:
    worker = session.scalar(select(WorkerRow).where(WorkerRow.token_hash == hash_token(token)))
    if worker is None or WorkerStatus(worker.status).is_finished():
        raise Unauthorized(REFUSED)
    return worker


# Built once, as every agent call runs them: a statement built at each call (Session.get's too) cost a
# quarter more, for its construction and its cache key.
_WORKER = select(WorkerRow).where(WorkerRow.name == bindparam("name")).with_for_update()
_NEXT = (  # the worker's task given or handed out, oldest first
    select(TaskRow)
    .where(
        TaskRow.worker_name == bindparam("name"),
        TaskRow.status.in_((TaskStatus.IN_QUEUE.value, TaskStatus.PREPARING.value)),
    )
    .order_by(TaskRow.created_at)
    .limit(1)
    .with_for_update()
)


def _to_kill(worker) -> tuple:
    """The conditions of ``worker``'s tasks that are to be stopped (``worker``: a value or a column)."""
    return TaskRow.worker_name == worker, TaskRow.stop_reason.is_not(None), TaskRow.status.in_(ACTIVE_VALUES)


_TO_KILL = select(TaskRow.id).where(*_to_kill(bindparam("name")))


def live_worker(session: Session, name: str) -> WorkerRow:
    """The calling agent's worker, locked for this transaction; refused once the worker has ended."""
    worker = session.scalar(_WORKER, {"name": name})
    if worker is None or WorkerStatus(worker.status).is_finished():
        raise Unauthorized(REFUSED)
    return worker


def touch(worker: WorkerRow) -> None:
    """Record that the worker's agent lives. Written at most every tenth of the heartbeat timeout (and
    every second): a write at each of its calls would cost more than it tells."""
    now = utcnow()
    if _touch_due(worker.last_seen_at, now):
        worker.last_seen_at = now
    if worker.status == WorkerStatus.PROVISIONING.value:
        worker.status = WorkerStatus.RUNNING.value
        worker.reason = None  # why its backend said it waited (services.provisioning): it is up now


def _touch_due(last_seen_at: datetime | None, now: datetime) -> bool:
    every = timedelta(seconds=min(TOUCH_EVERY, settings.heartbeat_timeout() / 10))
    return last_seen_at is None or now - last_seen_at >= every


def next_task(session: Session, worker: WorkerRow, vault: Vault) -> NextTask | None:
    """The task to run now, an order to stop, or None for "nothing yet".

    A task whose secrets cannot be had any more ends Runtime Error, and the next one is looked for.
    """
    task = session.scalar(_NEXT, {"name": worker.name})
    touch(worker)  # after the look-up, which would flush the worker on its own: one flush, at the commit
    if task is not None:
        if task.status == TaskStatus.IN_QUEUE.value:
            task.attempt += 1
            provisioning.clear(task)
            set_status(session, task, TaskStatus.PREPARING)
        # else it was handed out already, and the answer was lost (its server died before sending it,
        # say): an agent asks for work only between tasks, so it is handed out again, as the same attempt
        try:
            return NextTask(task=_assignment(session, task, vault, worker))
        except secret_service.SecretUnavailable as exc:
            set_status(session, task, TaskStatus.RUNTIME_ERROR, reason=exc.message)
            logs.system_line(session, task, f"[taskyard] {exc.message}")
            workers.release_fresh_worker(session, task)
            return next_task(session, worker, vault)
    if worker.status != WorkerStatus.RUNNING.value:
        return NextTask(terminate=True)
    return None


def _assignment(session: Session, task: TaskRow, vault: Vault, worker: WorkerRow) -> Assignment:
    """What the agent needs to run ``task``, its secrets opened (they live in this answer only).

    On a requested worker, the task's worker config goes on top of the worker's own."""
    spec = TaskSpec.model_validate_json(task.spec)
    pool = worker_requests.under(pools.get_spec(session, task.pool), worker)
    config = pools.effective_config(pool, spec.worker_config)
    secrets = secret_service.resolve(session, vault, task.user_id, config)
    return Assignment(
        task_id=task.id,
        file_name=task.file_name,
        kind=_kind(spec).name,
        env={**config.task_env(), **notebook_task.task_env(spec.parameters, spec.execution_timeout)},
        capture_output=spec.capture_task_output,
        log_seq=task.log_seq,
        kill_grace=settings.kill_grace(),
        max_unpack_bytes=settings.max_unpack_bytes(),
        max_outputs_bytes=settings.max_outputs_bytes(),
        startup_script=config.startup_script,
        bundle_key=bundle_key(task.user_id, task.bundle_sha256) if task.bundle_size <= INLINE_BUNDLE else None,
        git_configs=[_git(repo, token) for repo, token in zip(config.git_configs or (), secrets.git_tokens)],
        secret_env=secrets.env,
        network=config.network is not False,
        python_venv_name=spec.python_venv_name,
        python_requirements=config.python_requirements,
        keep_files=worker.config is not None,
    )


def _kind(spec: TaskSpec) -> kinds.TaskKind:
    kind = kinds.kind_of(spec.file_name, as_notebook=spec.is_notebook())
    if kind is None:  # TaskSpec refuses such a file name
        raise LookupError(f"{spec.file_name!r} is of no task kind")
    return kind


def _git(repo: GitConfig, token: str | None) -> dict:
    """A git config as the agent gets it: with the value of its secret_name as ``token``."""
    given = repo.model_dump(exclude_none=True)
    return given if token is None else {**given, "token": token}


def own_task(session: Session, worker: WorkerRow, task_id: str) -> TaskRow:
    task = session.scalar(task_service.LOCKED_TASK, {"id": task_id})
    if task is None or task.worker_name != worker.name:
        raise NotFound(f"worker {worker.name} holds no task {task_id!r}")
    return task


def event(session: Session, worker: WorkerRow, task_id: str, ev: AgentEvent) -> bool:
    """Apply an agent-reported status; return True if the task is to be killed."""
    task = own_task(session, worker, task_id)
    touch(worker)
    if task.stop_reason is not None:
        return True
    if ev.status not in AGENT_STATUSES:
        raise Conflict(f"an agent cannot set a task to {ev.status.alias}", field="status")
    if TaskStatus(task.status).is_terminal():
        return True
    _started(session, task, ev.started_at)
    if task.status == ev.status.value:  # said again: the answer to the first was lost (its server died, say)
        return False
    set_status(session, task, ev.status, reason=ev.reason, seen_at=ev.at)
    return False


def _started(session: Session, task: TaskRow, at: float | None) -> None:
    """A start told with the task's first output, its Finalizing or its finish: In Progress as of ``at``, unless
    the task is being stopped (it then ends as the stop says) or is past its start already."""
    if at is None or task.stop_reason is not None or task.status != TaskStatus.PREPARING.value:
        return
    set_status(session, task, TaskStatus.IN_PROGRESS, seen_at=at)


def append_logs(session: Session, worker: WorkerRow, task_id: str, body: AgentLogs) -> tuple[int, bool]:
    task = own_task(session, worker, task_id)
    _started(session, task, body.started_at)
    acked = logs.append(session, task, body.chunks)
    return acked, task.stop_reason is not None and not TaskStatus(task.status).is_terminal()


def may_log(session: Session, worker: WorkerRow, task_id: str) -> bool:
    """Check that ``task_id`` is the worker's; return True if the task is to be killed."""
    task = own_task(session, worker, task_id)
    return task.stop_reason is not None and not TaskStatus(task.status).is_terminal()


def finish(session: Session, worker: WorkerRow, task_id: str, fin: AgentFinish) -> TaskRow:
    task = own_task(session, worker, task_id)
    touch(worker)
    _started(session, task, fin.started_at)
    logs.append(session, task, fin.chunks)
    if TaskStatus(task.status).is_terminal():
        return task  # ended meanwhile (its worker terminated by hand, say): keep that ending
    task.exit_code = fin.exit_code
    ending = _ending(task, fin)
    if ending in (TaskStatus.SUCCESS, TaskStatus.FAILED) and task.status != TaskStatus.FINALIZING.value:
        set_status(session, task, TaskStatus.FINALIZING, seen_at=fin.exited_at)
    set_status(session, task, ending, reason=_stop_note(task) or _reason(fin), seen_at=fin.ended_at)
    workers.release_fresh_worker(session, task, tell_agent=False)  # the finish's answer tells it
    return task


def _ending(task: TaskRow, fin: AgentFinish) -> TaskStatus:
    if task.stop_reason is not None:
        return stop_ending(task)
    if fin.killed:
        return TaskStatus.KILLED
    if fin.error is not None:
        return TaskStatus.RUNTIME_ERROR
    return TaskStatus.SUCCESS if fin.exit_code == 0 else TaskStatus.FAILED


def _stop_note(task: TaskRow) -> str | None:
    if task.stop_reason == "timeout":
        return f"it ran longer than its time_to_live of {task.time_to_live:g} s"
    if task.stop_reason == "kill":
        return "killed on request"
    return None


def _reason(fin: AgentFinish) -> str | None:
    if fin.error is not None:
        return fin.error
    if fin.reason is not None:
        return fin.reason
    if fin.exit_code not in (0, None):
        return f"the task exited with code {fin.exit_code}"
    return None


# One read answers a heartbeat with nothing in it: the worker's status, when it was last heard from, and
# whether it has a task to kill or an order to hand. Most heartbeats are such (a warm worker's first, say).
_QUIET = select(
    WorkerRow.status,
    WorkerRow.last_seen_at,
    exists().where(*_to_kill(WorkerRow.name)),
    exists().where(*worker_commands.unhanded(WorkerRow.name, bindparam("now"))),
).where(WorkerRow.name == bindparam("name"))


def quiet(session: Session, name: str) -> AgentCommands | None:
    """A heartbeat's answer, read without the write lock, when worker ``name`` has no task to kill and no
    order to hand, and nothing to write: it runs and was heard from lately (see :func:`touch`), or it is
    being stopped (to be told so; when it was last heard from no longer matters). None otherwise:
    :func:`commands` then answers, in a transaction that writes."""
    now = utcnow()
    found = session.execute(_QUIET, {"name": name, "now": now}).first()
    if found is None or WorkerStatus(found.status).is_finished():
        raise Unauthorized(REFUSED)
    status, last_seen_at, kill, orders = found
    if kill or orders:
        return None
    if status == WorkerStatus.TERMINATING.value:
        return AgentCommands(kill=[], terminate=True)
    if status != WorkerStatus.RUNNING.value or _touch_due(last_seen_at, now):
        return None
    return AgentCommands(kill=[], terminate=False)


def commands(session: Session, worker: WorkerRow) -> AgentCommands:
    kill = list(session.scalars(_TO_KILL, {"name": worker.name}))
    touch(worker)  # after the look-up (see next_task)
    return AgentCommands(kill=kill, terminate=worker.status != WorkerStatus.RUNNING.value)


def outputs_stored(session: Session, worker: WorkerRow, task_id: str, key: str, size: int, partial: bool) -> None:
    task = own_task(session, worker, task_id)
    task.outputs_key, task.outputs_size, task.outputs_partial = key, size, partial
