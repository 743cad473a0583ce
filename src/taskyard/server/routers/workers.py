from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse

from taskyard.models import WorkerInfo, WorkerRequest
from taskyard.server.routers.deps import PlaneDep, UserDep
from taskyard.server.routers.params import MaxBytes
from taskyard.server.services import tasks as task_service
from taskyard.server.services import worker_output, worker_requests
from taskyard.server.services import workers as worker_service

router = APIRouter(prefix="/workers", tags=["workers"])


@router.get("", response_model=list[WorkerInfo])
def list_workers(plane: PlaneDep, user: UserDep, all: bool = False) -> list[WorkerInfo]:
    with plane.transaction() as session:
        rows = worker_service.list_workers(session, user, include_ended=all)
        return [worker_service.to_info(w, name, _task_id(session, w)) for w, name in rows]


@router.post(
    "", status_code=201, response_model=WorkerInfo,
    responses={200: {"model": WorkerInfo, "description": "with reuse: a live worker made alike"}},
)
def create(body: WorkerRequest, plane: PlaneDep, user: UserDep, response: Response) -> WorkerInfo:
    """A worker of the caller's own with no task yet, started when its pool has room (with ``reuse``,
    a live one made alike, answered 200); tasks sent to it with ``worker=`` run there."""
    with plane.transaction() as session:
        backend = plane.backend_of_pool(session, body.pool)
        worker, created = worker_requests.request_worker(
            session, user, body, images=backend.images, default_image=backend.default_image,
            sizes=plane.config.sizes, capacity=backend.capacity(),
        )
        response.status_code = 201 if created else 200
        return worker_service.to_info(worker, user.name, None if created else _task_id(session, worker))


def _task_id(session, worker) -> str | None:
    task = task_service.task_of_worker(session, worker)
    return task.id if task else None


@router.get("/{name}", response_model=WorkerInfo)
def show(name: str, plane: PlaneDep, user: UserDep) -> WorkerInfo:
    with plane.transaction() as session:
        worker = worker_service.get_worker(session, user, name)
        owner = task_service.user_name(session, worker)
        return worker_service.to_info(worker, owner, _task_id(session, worker))


@router.post("/{name}/terminate", response_model=WorkerInfo)
def terminate(name: str, plane: PlaneDep, user: UserDep) -> WorkerInfo:
    with plane.transaction() as session:
        worker = worker_service.request_terminate(session, user, name)
        return worker_service.to_info(worker, task_service.user_name(session, worker))


@router.get("/{name}/logs", response_class=PlainTextResponse)
def logs(name: str, plane: PlaneDep, user: UserDep, max_bytes: MaxBytes = 1 << 20) -> str:
    """The output of the tasks this worker ran, oldest first, then, while the worker lives, its own log
    (what tasks run with capture_task_output=False printed); cut to the last ``max_bytes``."""
    with plane.transaction() as session:
        text, alive = worker_service.task_logs(session, user, name, max_bytes)
    if not alive:
        worker_output.drop(plane.storage, name)
        return text[-max_bytes:]
    return (text + worker_output.read(plane.storage, name, max_bytes))[-max_bytes:]
