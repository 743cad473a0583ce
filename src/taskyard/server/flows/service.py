"""Flow runs: submission (idempotent on the client's flow id), reading, listing, killing and rerunning."""

from __future__ import annotations

import hashlib

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taskyard.errors import Conflict, NotFound
from taskyard.server.db.models import FlowRunRow, FlowTaskRow, TaskRow, UserRow, utcnow
from taskyard.server.notifier import FLOWS, NEW_FLOWS
from taskyard.server.services.lifecycle import notify_on_commit
from taskyard.server.services.tasks import new_task_id
from taskyard.status import TaskStatus
from taskyard.workflows.models import FlowInfo, FlowSpec, FlowStatus, FlowTaskInfo, FlowTaskState


def flow_key(run_id: str) -> str:
    return f"flow:{run_id}"


def spec_hash(spec: FlowSpec) -> str:
    return hashlib.sha256(spec.model_dump_json(exclude={"flow_id"}).encode()).hexdigest()


def create_run(session: Session, user: UserRow, spec: FlowSpec, *, bundle_present: bool) -> tuple[FlowRunRow, bool]:
    """Create a run and its tasks, or return the run already made for a repeated ``flow_id``."""
    digest = spec_hash(spec)
    if spec.flow_id is not None:
        existing = session.get(FlowRunRow, spec.flow_id)
        if existing is not None:
            return _same_run(existing, user, digest), False
    status = FlowStatus.RUNNING if bundle_present else FlowStatus.WAITING_FOR_INPUT
    run = FlowRunRow(id=spec.flow_id or new_task_id(), user_id=user.id, spec=spec.model_dump_json(),
                     spec_hash=digest, status=status.value, created_at=utcnow())
    try:
        with session.begin_nested():
            session.add(run)
            session.flush()
    except IntegrityError:
        winner = session.get(FlowRunRow, run.id)
        if winner is None:
            raise
        return _same_run(winner, user, digest), False
    for position, name in enumerate(spec.graph().names):
        session.add(FlowTaskRow(run_id=run.id, name=name, position=position, state=FlowTaskState.WAITING.value,
                                attempt=0, reused=False))
    notify_on_commit(session, FLOWS, NEW_FLOWS)
    return run, True


def _same_run(existing: FlowRunRow, user: UserRow, digest: str) -> FlowRunRow:
    if existing.user_id != user.id or existing.spec_hash != digest:
        raise Conflict(f"flow id {existing.id!r} is already used by a different flow run", field="flow_id")
    return existing


def bundle_uploaded(session: Session, run: FlowRunRow) -> None:
    if run.status == FlowStatus.WAITING_FOR_INPUT.value:
        run.status = FlowStatus.RUNNING.value
        notify_on_commit(session, FLOWS, NEW_FLOWS, flow_key(run.id))


def get_run(session: Session, user: UserRow, run_id: str, *, for_update: bool = False) -> FlowRunRow:
    run = session.get(FlowRunRow, run_id, with_for_update=for_update)
    if run is None or not (user.is_admin or run.user_id == user.id):
        raise NotFound(f"no flow run {run_id!r}")
    return run


def tasks_of(session: Session, run: FlowRunRow) -> list[FlowTaskRow]:
    query = select(FlowTaskRow).where(FlowTaskRow.run_id == run.id).order_by(FlowTaskRow.position)
    return list(session.scalars(query))


def list_runs(session: Session, user: UserRow, *, limit: int = 50) -> list[FlowRunRow]:
    query = select(FlowRunRow).order_by(FlowRunRow.created_at.desc(), FlowRunRow.id.desc()).limit(limit)
    if not user.is_admin:
        query = query.where(FlowRunRow.user_id == user.id)
    return list(session.scalars(query))


def request_kill(session: Session, user: UserRow, run_id: str) -> FlowRunRow:
    """Kill a run: the driver stops its running tasks and cancels the others."""
    run = get_run(session, user, run_id, for_update=True)
    status = FlowStatus(run.status)
    if status.is_terminal() or status is FlowStatus.KILLING:
        return run
    run.status = FlowStatus.KILLING.value
    notify_on_commit(session, FLOWS, NEW_FLOWS, flow_key(run.id))
    return run


def rerun(session: Session, user: UserRow, run_id: str) -> FlowRunRow:
    """A new run of the same flow that reuses the successes of ``run_id`` and runs the rest again."""
    old = get_run(session, user, run_id)
    if not FlowStatus(old.status).is_terminal():
        raise Conflict(f"flow run {run_id!r} is still {FlowStatus(old.status).alias}; kill it or wait for it first")
    spec = FlowSpec.model_validate_json(old.spec).model_copy(update={"flow_id": None})
    owner = session.get(UserRow, old.user_id)  # an admin's rerun is still the owner's run: its files are theirs
    assert owner is not None  # users are never deleted
    run, _ = create_run(session, owner, spec, bundle_present=True)
    run.rerun_of = old.id
    done = {row.name: row for row in tasks_of(session, old) if row.state == FlowTaskState.SUCCESS.value}
    session.flush()
    for row in tasks_of(session, run):
        if row.name in done:
            before = done[row.name]
            row.state, row.task_id, row.attempt, row.reused = before.state, before.task_id, before.attempt, True
            row.started_at, row.finished_at = before.started_at, before.finished_at
    return run


def to_info(session: Session, run: FlowRunRow) -> FlowInfo:
    spec = FlowSpec.model_validate_json(run.spec)
    graph = spec.graph()
    user = session.get(UserRow, run.user_id)
    status = FlowStatus(run.status)
    return FlowInfo(
        id=run.id, status=status, alias=status.alias, dag_flow=spec.dag_flow, user=user.name if user else "",
        reason=run.reason, max_parallel=spec.max_parallel, retries=spec.retries, rerun_of=run.rerun_of,
        created_at=run.created_at, finished_at=run.finished_at, upload_required=status is FlowStatus.WAITING_FOR_INPUT,
        tasks=[_task_info(session, row, spec.task_files[row.name], graph.upstream[row.name])
               for row in tasks_of(session, run)],
    )


def _task_info(session: Session, row: FlowTaskRow, file_name: str, upstream: list[str]) -> FlowTaskInfo:
    return FlowTaskInfo(
        name=row.name, file_name=file_name, upstream=upstream, state=display_state(session, row), task_id=row.task_id,
        attempt=row.attempt, reused=row.reused, reason=row.reason, started_at=row.started_at,
        finished_at=row.finished_at,
    )


def display_state(session: Session, row: FlowTaskRow) -> str:
    """"Waiting", "Upstream Failed", "Cancelled", or the alias of the status of its task."""
    state = FlowTaskState(row.state)
    if row.task_id is None or state in (FlowTaskState.UPSTREAM_FAILED, FlowTaskState.CANCELLED):
        return state.alias
    if state is FlowTaskState.WAITING:  # between attempts
        return state.alias
    task = session.get(TaskRow, row.task_id)
    return TaskStatus(task.status).alias if task is not None else state.alias

