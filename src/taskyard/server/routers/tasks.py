from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial

from fastapi import APIRouter, Request, Response
from fastapi.responses import FileResponse, PlainTextResponse
from sqlalchemy.orm import Session

from taskyard import settings
from taskyard.backends.base import Backend
from taskyard.bundle import raise_limit_hint
from taskyard.errors import NotFound, TooLarge
from taskyard.models import (
    LogPage,
    OutputFiles,
    PoolSpec,
    TaskBatch,
    TaskBatchInfo,
    TaskInfo,
    TaskMetadata,
    TaskPage,
    TaskSpec,
)
from taskyard.server.callbacks import outbox
from taskyard.server.db.models import TaskRow, UserRow
from taskyard.server.notifier import ended_key, logs_key
from taskyard.server.plane import Plane
from taskyard.server.routers.answers import answer as json_answer
from taskyard.server.routers.deps import PlaneDep, UserDep
from taskyard.server.routers.params import Limit, MaxBytes, Seconds, Seq
from taskyard.server.services import logs as log_service
from taskyard.server.services import metadata as metadata_service
from taskyard.server.services import outputs as output_service
from taskyard.server.services import tasks as task_service
from taskyard.server.storage import bundle_key
from taskyard.server.uploads import check_bundle

router = APIRouter(prefix="/tasks", tags=["tasks"])
MAX_WAIT = 60.0


@router.post(
    "", status_code=201, response_model=TaskInfo,
    responses={200: {"model": TaskInfo, "description": "the same task_id again: the task submitted before"}},
)
def submit(spec: TaskSpec, plane: PlaneDep, user: UserDep) -> Response:
    info, created = submit_spec(plane, user, spec)
    return json_answer(info, status_code=201 if created else 200)


@router.post("/batch", status_code=201, response_model=TaskBatchInfo)
def submit_batch(batch: TaskBatch, plane: PlaneDep, user: UserDep) -> Response:
    """Create many tasks in one transaction, in order (a repeated task_id finds its task again)."""
    return json_answer(TaskBatchInfo(tasks=[info for info, _ in submit_specs(plane, user, batch.tasks)]), 201)


def submit_spec(plane: Plane, user: UserRow, spec: TaskSpec) -> tuple[TaskInfo, bool]:
    """Create the task ``spec`` describes (or find it again, for a repeated task_id): ``(info, created)``."""
    return submit_specs(plane, user, [spec])[0]


def submit_specs(plane: Plane, user: UserRow, specs: list[TaskSpec]) -> list[tuple[TaskInfo, bool]]:
    """Create the tasks ``specs`` describe, all in one transaction: ``(info, created)`` for each."""
    for spec in specs:
        _check_size(spec)
    present = {sha: plane.storage.exists(bundle_key(user.id, sha)) for sha in {s.bundle_sha256 for s in specs}}
    with plane.transaction() as session:
        batch = _Batch(plane, session, user, present)
        return [batch.create(spec) for spec in specs]


def _check_size(spec: TaskSpec) -> None:
    limit = settings.max_upload_bytes()
    if spec.bundle_size > limit:
        raise TooLarge(
            f"the task folder packs to {spec.bundle_size / 1e6:.1f} MB, over this server's upload limit of "
            f"{limit / (1024 * 1024):.3g} MB (TASKYARD_MAX_UPLOAD_MB where it runs); exclude files with a "
            f".taskyardignore, or raise the limit on the server. {raise_limit_hint(spec.bundle_size)}",
            field="bundle_size",
        )


@dataclass
class _Batch:
    """The tasks of one submission, created in one transaction; each pool and its backend looked up once."""

    plane: Plane
    session: Session
    user: UserRow
    present: dict[str, bool]  # bundle sha256 -> stored already
    pools: dict[str, PoolSpec] = field(default_factory=dict)
    backends: dict[str, Backend] = field(default_factory=dict)

    def create(self, spec: TaskSpec) -> tuple[TaskInfo, bool]:
        spec, token = outbox.split_token(spec)
        backend = self._backend(spec.pool)
        task, created = task_service.create_task(
            self.session,
            self.user,
            spec,
            bundle_present=self.present[spec.bundle_sha256],
            images=backend.images,
            sizes=self.plane.config.sizes,
            capacity=backend.capacity(),
            venvs=backend.python_venvs() if spec.python_venv_name else None,
            pools_seen=self.pools,
        )
        if created:
            outbox.register(self.session, self.plane.vault, self.plane.config.callbacks, task, spec, token)
        return task_service.to_info(task, self.user.name), created

    def _backend(self, pool: str) -> Backend:
        if pool not in self.backends:
            self.backends[pool] = self.plane.backend_of_pool(self.session, pool)
        return self.backends[pool]


@router.put("/{task_id}/bundle", response_model=TaskInfo)
async def upload_bundle(task_id: str, request: Request, plane: PlaneDep, user: UserDep) -> TaskInfo:
    task = await plane.run(lambda s: task_service.get_task(s, user, task_id))
    key = bundle_key(user.id, task.bundle_sha256)
    if not plane.storage.exists(key):
        check = partial(check_bundle, declared=task.bundle_size, max_unpack=settings.max_unpack_bytes())
        await plane.storage.put_stream(
            key, request.stream(), max_bytes=settings.max_upload_bytes(), sha256=task.bundle_sha256, check=check
        )

    def mark(session: Session) -> TaskInfo:
        row = task_service.get_task(session, user, task_id, for_update=True)
        task_service.bundle_uploaded(session, row)
        return task_service.to_info(row, task_service.user_name(session, row, user))

    return await plane.run(mark)


@router.get("", response_model=TaskPage)
def list_tasks(
    plane: PlaneDep, user: UserDep, limit: Limit = 50, cursor: str | None = None, status: str | None = None
) -> TaskPage:
    with plane.reading() as session:
        rows, next_cursor = task_service.list_tasks(session, user, limit=limit, cursor=cursor, status=status)
        return TaskPage(tasks=[task_service.to_info(t, name) for t, name in rows], next_cursor=next_cursor)


def _info(session: Session, user, task_id: str) -> TaskInfo:
    task = task_service.get_task(session, user, task_id)
    changes = task_service.history(session, task)
    position = task_service.position_in_queue(session, task)
    return task_service.to_info(task, task_service.user_name(session, task, user), changes, position)


@router.get("/{task_id}", response_model=TaskInfo)
async def show(task_id: str, plane: PlaneDep, user: UserDep) -> Response:
    return json_answer(await plane.read(lambda s: _info(s, user, task_id)))


@router.get("/{task_id}/wait", response_model=TaskInfo)
async def wait(task_id: str, plane: PlaneDep, user: UserDep, timeout: Seconds = 30) -> Response:
    """The task once it has ended, or as it is when ``timeout`` seconds have passed."""

    async def check() -> tuple[bool, TaskInfo | None]:
        ended = await plane.read(lambda s: _ended_info(s, user, task_id))
        return ended is not None, ended

    info = await plane.notifier.poll(ended_key(task_id), check, min(timeout, MAX_WAIT))  # not woken by each change
    if info is None:  # still going when the time was up
        info = await plane.read(lambda s: _info(s, user, task_id))
    return json_answer(info)


def _ended_info(session: Session, user, task_id: str) -> TaskInfo | None:
    """The task's full answer once it has ended, in the read that finds it so; before, its status alone is read."""
    return _info(session, user, task_id) if task_service.get_status(session, user, task_id).is_terminal() else None


@router.get("/{task_id}/logs", response_model=LogPage)
async def logs(
    task_id: str, plane: PlaneDep, user: UserDep, after: Seq = 0, wait: Seconds = 0, max_bytes: MaxBytes = 1 << 20
) -> Response:
    """Log chunks after ``after``; with ``wait``, hold the request until there is one or the task ends."""

    def page(session: Session) -> LogPage:
        return log_service.page(session, task_service.get_task(session, user, task_id), after, max_bytes)

    async def check() -> tuple[bool, LogPage]:
        result = await plane.read(page)
        return bool(result.chunks) or result.done, result

    found = await plane.notifier.poll(logs_key(task_id), check, min(wait, MAX_WAIT))  # not woken by each change
    return json_answer(found)


@router.get("/{task_id}/logs/tail", response_class=PlainTextResponse)
def tail(task_id: str, plane: PlaneDep, user: UserDep, max_bytes: MaxBytes = 1 << 20) -> str:
    with plane.reading() as session:
        task_service.get_task(session, user, task_id)
        return log_service.tail(session, task_id, max_bytes)


@router.post("/{task_id}/kill", response_model=TaskInfo)
def kill(task_id: str, plane: PlaneDep, user: UserDep) -> TaskInfo:
    with plane.transaction() as session:
        task_service.request_kill(session, user, task_id)
        return _info(session, user, task_id)


@router.get("/{task_id}/outputs")
def outputs(task_id: str, plane: PlaneDep, user: UserDep) -> FileResponse:
    with plane.transaction() as session:
        task = task_service.get_task(session, user, task_id)
    return outputs_file(plane, task)


def outputs_file(plane: Plane, task: TaskRow) -> FileResponse:
    """The task's outputs as a tar.gz download (``X-Taskyard-Outputs``: partial or result)."""
    if task.outputs_key is None:
        raise NotFound(f"task {task.id!r} has no outputs")
    kind = "partial" if task.outputs_partial else "result"
    return FileResponse(
        plane.storage.path(task.outputs_key),
        media_type="application/gzip",
        filename=f"{task.id}-{kind}.tar.gz",
        headers={"X-Taskyard-Outputs": kind},
    )


@router.get("/{task_id}/outputs/files", response_model=OutputFiles)
def output_files(task_id: str, plane: PlaneDep, user: UserDep) -> OutputFiles:
    """The files in the task's outputs and their sizes; NotFound while it has none."""
    with plane.transaction() as session:
        task = task_service.get_task(session, user, task_id)
    if task.outputs_key is None:
        raise NotFound(f"task {task_id!r} has no outputs")
    return output_service.list_files(plane.storage.path(task.outputs_key), partial=task.outputs_partial)


@router.get("/{task_id}/outputs/tail", response_class=PlainTextResponse)
def output_tail(task_id: str, name: str, plane: PlaneDep, user: UserDep, lines: int = 10) -> str:
    """The last ``lines`` lines of one file of the task's outputs; NotFound while it has none, or no such file."""
    with plane.transaction() as session:
        task = task_service.get_task(session, user, task_id)
    if task.outputs_key is None:
        raise NotFound(f"task {task_id!r} has no outputs")
    return output_service.tail_file(plane.storage.path(task.outputs_key), name, lines)


@router.get("/{task_id}/metadata", response_model=TaskMetadata)
def metadata(task_id: str, plane: PlaneDep, user: UserDep) -> TaskMetadata:
    with plane.transaction() as session:
        return metadata_service.read(session, user, task_id)


@router.patch("/{task_id}/metadata", response_model=TaskMetadata)
def update_metadata(task_id: str, given: TaskMetadata, plane: PlaneDep, user: UserDep) -> TaskMetadata:
    """Merge the keys given into the task's metadata; the answer is all of it."""
    with plane.transaction() as session:
        return metadata_service.update(session, user, task_id, given)
