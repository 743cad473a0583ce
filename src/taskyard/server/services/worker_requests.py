"""Workers made on request, with no task (``taskyard.create_worker``): a kept worker of the user's own.

The request writes the worker's row at once: its owner, pool, size and image, its WorkerConfig
and ``requested`` (not yet started). The scheduler starts it when its pool has room and its
backend has what its size needs (see ``Scheduler._start_requested``), as it starts a worker for a
task; until then it is Provisioning and holds nothing. Once started it counts against its pool's
limit like a busy worker, and stays until it is terminated or its ``expires_at`` passes. Tasks sent
to it (``worker=``) get its config under their own, and keep the files of its task folder.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping
from datetime import timedelta

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from taskyard.backends.base import Resources
from taskyard.config import WorkerConfig
from taskyard.errors import InvalidInput
from taskyard.models import PoolSpec, WorkerRequest
from taskyard.server.config import Size, default_size_name
from taskyard.server.db.models import UserRow, WorkerRow, utcnow
from taskyard.server.notifier import SCHEDULER
from taskyard.server.services import pools, workers
from taskyard.server.services import secrets as secret_service
from taskyard.server.services import sizes as size_service
from taskyard.server.services.lifecycle import notify_on_commit
from taskyard.status import WorkerStatus

_PLACEHOLDER = "requested:"  # the token hash of a worker not yet started: no token hashes to it


def request_worker(
    session: Session,
    user: UserRow,
    request: WorkerRequest,
    *,
    images: Collection[str],
    default_image: str,
    sizes: Mapping[str, Size],
    capacity: Resources | None,
) -> tuple[WorkerRow, bool]:
    """The worker ``request`` asks for, new (True) or, with ``reuse``, a live one made alike (False)."""
    pool = pools.usable_spec(session, user, request.pool)
    config = pools.effective_config(pool, request.worker_config)
    size, image = _shape(config, images, default_image, sizes, capacity)
    secret_service.check_task_config(session, user, config)
    if request.reuse:
        found = _alike(session, user, request.pool, size, image)
        if found is not None:
            return found, False
    return _new(session, user, request, pool.backend, size, image), True


def _shape(
    config: WorkerConfig, images: Collection[str], default_image: str, sizes: Mapping[str, Size],
    capacity: Resources | None,
) -> tuple[str, str]:
    image = config.worker_image or default_image
    if image not in images:
        raise InvalidInput(f"unknown worker_image {image!r}; valid images: {', '.join(sorted(images))}",
                           field="worker_config.worker_image")
    size = size_service.check(sizes, capacity, config.worker_size or default_size_name(sizes))
    return size, image


def _alike(session: Session, user: UserRow, pool: str, size: str, image: str) -> WorkerRow | None:
    query = select(WorkerRow).where(
        WorkerRow.user_id == user.id, WorkerRow.config.is_not(None), WorkerRow.status.in_(workers.RUNNABLE),
        WorkerRow.pool == pool, WorkerRow.size == size, WorkerRow.image == image,
    )
    return session.scalars(query.order_by(WorkerRow.created_at)).first()


def _new(session: Session, user: UserRow, request: WorkerRequest, backend: str, size: str, image: str) -> WorkerRow:
    now = utcnow()
    row = WorkerRow(
        name=workers.new_worker_name(), user_id=user.id, pool=request.pool, backend=backend, size=size, image=image,
        status=WorkerStatus.PROVISIONING.value, token_hash=_PLACEHOLDER + secrets.token_hex(16), keep=True,
        requested=True, config=request.worker_config.model_dump_json(exclude_none=True), created_at=now,
        expires_at=None if request.time_to_live is None else now + timedelta(seconds=request.time_to_live),
    )
    session.add(row)
    notify_on_commit(session, SCHEDULER)
    return row


def waiting(session: Session, pool: str) -> list[WorkerRow]:
    """The requested workers of ``pool`` not yet started, oldest first, locked for this pass."""
    return list(session.scalars(_WAITING, {"pool": pool}))


_WAITING = (  # built once: every scheduler pass runs it for each pool
    select(WorkerRow)
    .where(WorkerRow.requested.is_(True), WorkerRow.pool == bindparam("pool"),
           WorkerRow.status == WorkerStatus.PROVISIONING.value)
    .order_by(WorkerRow.created_at)
    .with_for_update(skip_locked=True)
)


def expired(session: Session) -> list[WorkerRow]:
    """The live workers whose time to live has passed."""
    query = select(WorkerRow).where(WorkerRow.expires_at < utcnow(), WorkerRow.status.in_(workers.RUNNABLE))
    return list(session.scalars(query.with_for_update(skip_locked=True)))


def base_config(worker: WorkerRow | None) -> WorkerConfig | None:
    """The config a requested worker was made with (the base of its tasks' configs); None for others."""
    if worker is None or worker.config is None:
        return None
    return WorkerConfig.model_validate_json(worker.config)


def under(pool: PoolSpec, worker: WorkerRow | None) -> PoolSpec:
    """``pool`` with the worker's own config on top of its defaults, for a task sent to that worker."""
    config = base_config(worker)
    if config is None:
        return pool
    return pool.model_copy(update={"worker_config": pools.effective_config(pool, config)})
