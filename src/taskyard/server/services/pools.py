"""Pools: named groups of workers with a backend, a default worker config, a size limit and a TTL.

The ``default`` pool always exists and every user may use it; its limits come from the server's
configuration. Other pools are made by an admin, within the server's limit of workers, or declared
by the configuration file (``[pools.NAME]``: such a row has no owner, is rewritten from the file at
each start, and cannot be deleted over the API). Pools are shared with the users named in their
``shared_with``, with the members of the groups named there as ``group:NAME``, or with every user
(``"*"``). A user sees, and may send tasks to, only the pools shared with them; to anyone else such a
pool does not exist. Group membership is read from the database at each check, so it holds at once.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Set

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskyard import settings
from taskyard.backends.base import Resources
from taskyard.config import WorkerConfig
from taskyard.errors import ConfigError, Conflict, Forbidden, InvalidInput, NotFound
from taskyard.models import EVERYONE, GROUP, PoolInfo, PoolSpec
from taskyard.server.config import Size, find_size
from taskyard.server.db.models import PoolRow, TaskRow, UserRow, WorkerRow, utcnow
from taskyard.server.services import groups as group_service
from taskyard.server.services import secrets as secret_service
from taskyard.server.services import sizes as size_service
from taskyard.server.services import workers as worker_service
from taskyard.server.services.lifecycle import set_status
from taskyard.status import TaskStatus

DEFAULT = "default"
DECLARED_OWNER = "config"  # the owner shown for a pool the configuration file declares


def default_spec(*, max_workers: int | None = None, warm_workers: int | None = None) -> PoolSpec:
    """The default pool; the limits not given are the settings' (``TASKYARD_MAX_WORKERS`` ...)."""
    return PoolSpec(
        name=DEFAULT,
        max_workers=settings.max_workers() if max_workers is None else max_workers,
        warm_workers=settings.warm_workers() if warm_workers is None else warm_workers,
    )


def may_use(user: UserRow, spec: PoolSpec, groups: Set[str] = frozenset()) -> bool:
    """Whether ``user``, a member of ``groups``, may see and use the pool."""
    if user.is_admin or spec.name == DEFAULT:
        return True
    shared = spec.shared_with
    return EVERYONE in shared or user.name in shared or any(GROUP + group in shared for group in groups)


def usable_spec(session: Session, user: UserRow, name: str) -> PoolSpec:
    """The pool called ``name`` if ``user`` may use it; InvalidInput naming the pools they may use if not.

    The default pool is never stored (neither the API nor the configuration file makes one of that name)."""
    if name == DEFAULT:
        return default_spec()
    spec, groups = _stored(session, name), group_service.names_of(session, user)
    if spec is not None and may_use(user, spec, groups):
        return spec
    known = ", ".join(pool.name for pool in all_specs(session) if may_use(user, pool, groups))
    raise InvalidInput(f"no pool {name!r}; pools: {known}", field="pool")


def _stored(session: Session, name: str) -> PoolSpec | None:
    row = session.get(PoolRow, name)
    return PoolSpec.model_validate_json(row.spec) if row is not None else None


def get_spec(session: Session, name: str, *, default: PoolSpec | None = None) -> PoolSpec:
    """The pool called ``name`` (``default``: the default pool's spec, when known); InvalidInput if none."""
    if name == DEFAULT:
        return default or default_spec()
    row = session.get(PoolRow, name)
    if row is None:
        known = ", ".join([DEFAULT, *session.scalars(select(PoolRow.name).order_by(PoolRow.name))])
        raise InvalidInput(f"no pool {name!r}; pools: {known}", field="pool")
    return PoolSpec.model_validate_json(row.spec)


_POOLS = select(PoolRow).order_by(PoolRow.name)


def all_specs(session: Session, *, default: PoolSpec | None = None) -> list[PoolSpec]:
    rows = session.scalars(_POOLS)
    return [default or default_spec(), *(PoolSpec.model_validate_json(row.spec) for row in rows)]


def create_pool(
    session: Session,
    user: UserRow,
    spec: PoolSpec,
    *,
    backends: Collection[str],
    sizes: Mapping[str, Size],
    capacity: Resources | None,
    server_max: int,
) -> PoolInfo:
    """Add a pool (admins only); its worker size must be one of ``sizes`` that ``capacity`` holds (stored canonically).

    Its ``max_workers`` is at most ``server_max`` (the server's own limit), its warm workers at most that.
    """
    if not user.is_admin:
        raise Forbidden("only an admin can make pools; ask one to make a pool and share it with you")
    if spec.name == DEFAULT or session.get(PoolRow, spec.name) is not None:
        raise Conflict(f"pool {spec.name!r} already exists", field="name")
    check_limits(spec, server_max)
    _check_sharees(session, spec.shared_with)
    if spec.backend not in backends:
        raise InvalidInput(f"unknown backend {spec.backend!r}; backends: {', '.join(backends)}", field="backend")
    secret_service.check_pool_config(session, spec.worker_config)
    if spec.worker_config.worker_size is not None:
        size = size_service.check(sizes, capacity, spec.worker_config.worker_size)
        spec = spec.model_copy(update={"worker_config": spec.worker_config.model_copy(update={"worker_size": size})})
    row = PoolRow(name=spec.name, user_id=user.id, spec=spec.model_dump_json(), created_at=utcnow())
    session.add(row)
    return to_info(session, spec, row)


def check_limits(spec: PoolSpec, server_max: int) -> None:
    """InvalidInput when the pool asks for more workers than the server runs, or more warm ones than it may run."""
    if spec.max_workers > server_max:
        raise InvalidInput(
            f"max_workers {spec.max_workers} is more than this server runs at once ({server_max})", field="max_workers"
        )
    if spec.warm_workers > spec.max_workers:
        raise InvalidInput(
            f"warm_workers {spec.warm_workers} is more than the pool's max_workers ({spec.max_workers})",
            field="warm_workers",
        )


def _check_sharees(session: Session, names: list[str]) -> None:
    """InvalidInput naming the first user or group in ``shared_with`` that does not exist."""
    wanted = {name for name in names if name != EVERYONE and not name.startswith(GROUP)}
    found = set(session.scalars(select(UserRow.name).where(UserRow.name.in_(wanted), UserRow.removed_at.is_(None))))
    if wanted - found:
        raise InvalidInput(f"no user {sorted(wanted - found)[0]!r}", field="shared_with")
    groups = group_service.missing(session, (name.removeprefix(GROUP) for name in names if name.startswith(GROUP)))
    if groups:
        raise InvalidInput(f"no group {groups[0]!r}", field="shared_with")


def refuse_over_limits(session: Session, server_max: int) -> None:
    """At start: a ConfigError naming every stored pool whose warm workers are more than it may run."""
    over = [
        f"pool {spec.name!r} keeps {spec.warm_workers} warm workers, more than its limit"
        f" ({min(spec.max_workers, server_max)})"
        for spec in all_specs(session)[1:]
        if spec.warm_workers > min(spec.max_workers, server_max)
    ]
    if over:
        raise ConfigError("; ".join(over) + "; lower its warm_workers, or delete and make it again")
def declare(session: Session, declared: Mapping[str, PoolSpec], *, sizes: Mapping[str, Size]) -> None:
    """Make the pools the configuration file declares what it says, and drop those it no longer declares.

    A pool of the same name made over the API is taken over by the file.
    """
    for name, spec in declared.items():
        if spec.worker_config.worker_size is not None:
            size, _ = find_size(sizes, spec.worker_config.worker_size)
            config = spec.worker_config.model_copy(update={"worker_size": size})
            spec = spec.model_copy(update={"worker_config": config})
        row = session.get(PoolRow, name) or PoolRow(name=name, created_at=utcnow())
        row.user_id, row.spec = None, spec.model_dump_json()
        session.add(row)
    for row in session.scalars(select(PoolRow).where(PoolRow.user_id.is_(None))):
        if row.name not in declared:
            _remove(session, row)


def delete_pool(session: Session, user: UserRow, name: str) -> None:
    """Delete a pool: its queued tasks end Machine Terminated in Queue, its workers are terminated."""
    row = session.get(PoolRow, name)
    if row is None:
        raise NotFound(f"no pool {name!r}" + (" (the default pool cannot be deleted)" if name == DEFAULT else ""))
    if row.user_id is None:
        raise Forbidden(f"pool {name!r} is declared in the server's configuration file; remove it there")
    if not user.is_admin:
        if may_use(user, PoolSpec.model_validate_json(row.spec), group_service.names_of(session, user)):
            raise Forbidden("only an admin can delete pools")
        raise NotFound(f"no pool {name!r}")
    _remove(session, row)


def _remove(session: Session, row: PoolRow) -> None:
    name = row.name
    for task in session.scalars(_queued(name)):
        set_status(session, task, TaskStatus.MACHINE_TERMINATED_IN_QUEUE, reason=f"pool {name} was deleted")
    for worker in session.scalars(select(WorkerRow).where(WorkerRow.pool == name)):
        if worker.status in worker_service.LIVE:
            worker_service.end_with_tasks(session, worker, by=f"the deletion of pool {name}")
    session.delete(row)


def _queued(name: str):
    waiting = (TaskStatus.IN_QUEUE.value, TaskStatus.WAITING_FOR_INPUT.value)
    return select(TaskRow).where(TaskRow.pool == name, TaskRow.status.in_(waiting), TaskRow.worker_name.is_(None))


def pool_info(session: Session, user: UserRow, name: str, *, default: PoolSpec) -> PoolInfo:
    """The pool called ``name`` with its busy workers and queued tasks; NotFound if there is none for ``user``."""
    row = session.get(PoolRow, name)
    spec = get_spec(session, name, default=default) if row is not None or name == DEFAULT else None
    if spec is None or not may_use(user, spec, group_service.names_of(session, user)):
        raise NotFound(f"no pool {name!r}")
    return to_info(session, spec, row)


def list_pools(session: Session, user: UserRow, *, default: PoolSpec) -> list[PoolInfo]:
    """The pools ``user`` may use, the default one first."""
    rows = {row.name: row for row in session.scalars(_POOLS)}
    groups = group_service.names_of(session, user)
    specs = [spec for spec in all_specs(session, default=default) if may_use(user, spec, groups)]
    return [to_info(session, spec, rows.get(spec.name)) for spec in specs]


def to_info(session: Session, spec: PoolSpec, row: PoolRow | None) -> PoolInfo:
    owner_row = session.get(UserRow, row.user_id) if row and row.user_id is not None else None
    owner = owner_row.name if owner_row else DECLARED_OWNER if row else "admin"
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
