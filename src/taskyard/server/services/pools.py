"""Pools: named groups of workers with a backend, a default worker config, a size limit and a TTL.

The ``default`` pool always exists; its limits come from the server's settings.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskyard import settings
from taskyard.config import WorkerConfig
from taskyard.errors import Conflict, Forbidden, InvalidInput, NotFound
from taskyard.models import PoolInfo, PoolSpec
from taskyard.server.db.models import PoolRow, TaskRow, UserRow, WorkerRow, utcnow
from taskyard.server.services import workers as worker_service
from taskyard.server.services.lifecycle import set_status
from taskyard.status import TaskStatus

DEFAULT = "default"


def default_spec() -> PoolSpec:
    return PoolSpec(name=DEFAULT, max_workers=settings.max_workers(), warm_workers=settings.warm_workers())


def get_spec(session: Session, name: str) -> PoolSpec:
    if name == DEFAULT:
        return default_spec()
    row = session.get(PoolRow, name)
    if row is None:
        known = ", ".join([DEFAULT, *session.scalars(select(PoolRow.name).order_by(PoolRow.name))])
        raise InvalidInput(f"no pool {name!r}; pools: {known}", field="pool")
    return PoolSpec.model_validate_json(row.spec)


_POOLS = select(PoolRow).order_by(PoolRow.name)


def all_specs(session: Session) -> list[PoolSpec]:
    rows = session.scalars(_POOLS)
    return [default_spec(), *(PoolSpec.model_validate_json(row.spec) for row in rows)]


def create_pool(session: Session, user: UserRow, spec: PoolSpec, *, backends: Collection[str]) -> PoolRow:
    if spec.name == DEFAULT or session.get(PoolRow, spec.name) is not None:
        raise Conflict(f"pool {spec.name!r} already exists", field="name")
    if spec.backend not in backends:
        raise InvalidInput(f"unknown backend {spec.backend!r}; backends: {', '.join(backends)}", field="backend")
    row = PoolRow(name=spec.name, user_id=user.id, spec=spec.model_dump_json(), created_at=utcnow())
    session.add(row)
    return row


def delete_pool(session: Session, user: UserRow, name: str) -> None:
    """Delete a pool: its queued tasks end Machine Terminated in Queue, its workers are terminated."""
    row = session.get(PoolRow, name)
    if row is None:
        raise NotFound(f"no pool {name!r}" + (" (the default pool cannot be deleted)" if name == DEFAULT else ""))
    if not (user.is_admin or row.user_id == user.id):
        raise Forbidden(f"pool {name!r} belongs to another user")
    for task in session.scalars(_queued(name)):
        set_status(session, task, TaskStatus.MACHINE_TERMINATED_IN_QUEUE, reason=f"pool {name} was deleted")
    for worker in session.scalars(select(WorkerRow).where(WorkerRow.pool == name)):
        if worker.status in worker_service.LIVE:
            worker_service.end_with_tasks(session, worker, by=f"the deletion of pool {name}")
    session.delete(row)


def _queued(name: str):
    waiting = (TaskStatus.IN_QUEUE.value, TaskStatus.WAITING_FOR_INPUT.value)
    return select(TaskRow).where(TaskRow.pool == name, TaskRow.status.in_(waiting), TaskRow.worker_name.is_(None))


def to_info(session: Session, spec: PoolSpec, row: PoolRow | None) -> PoolInfo:
    owner = session.get(UserRow, row.user_id).name if row else "admin"
    queued = session.scalar(select(func.count()).select_from(_queued(spec.name).subquery())) or 0
    return PoolInfo(
        **spec.model_dump(),
        user=owner,
        busy_workers=worker_service.busy_count(session, spec.name),
        queued_tasks=queued,
        created_at=row.created_at if row else utcnow(),
    )


def effective_config(pool: PoolSpec, task: WorkerConfig) -> WorkerConfig:
    """The task's worker config on top of its pool's defaults (env variables merged)."""
    given = {f: getattr(task, f) for f in WorkerConfig.model_fields if f != "additional_params"}
    merged = pool.worker_config.model_copy(update={f: v for f, v in given.items() if v is not None})
    env = {**(pool.worker_config.env_variables or {}), **(task.env_variables or {})}
    return merged.model_copy(update={"env_variables": env or None})
