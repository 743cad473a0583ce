"""``POST /task-runner``: a CI system starts a task from git (or a pushed folder) and gets a callback.

It answers the seed's ``TaskRunnerResponse`` in every case: ``{"success": false, "message": ...}``
with a 4xx status for a request that is refused, the message naming the field and the reason.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException

from taskyard.errors import TaskyardError
from taskyard.server.routers.deps import PlaneDep, UserDep
from taskyard.server.routers.tasks import submit_spec
from taskyard.server.services import task_runner as runner_service
from taskyard.status import TaskStatus
from taskyard.task_runner import TaskRunnerRequest, TaskRunnerResponse

REFUSED = {"model": TaskRunnerResponse, "description": "Refused: the message names the field and the reason"}


class RunnerRoute(APIRoute):
    """Errors, validation included, answered as a ``TaskRunnerResponse`` instead of the API's error model."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def answer(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                return _refused(_validation_message(exc.errors()), 422)
            except TaskyardError as exc:
                return _refused(_error_message(exc), exc.http_status)
            except HTTPException as exc:  # a body that cannot be read at all
                return _refused(f"body: {exc.detail}", exc.status_code)

        return answer


router = APIRouter(tags=["task runner"], route_class=RunnerRoute)


@router.post(
    "/task-runner",
    response_model=TaskRunnerResponse,
    responses={code: REFUSED for code in (400, 401, 404, 409, 413, 422)},
)
def task_runner(payload: TaskRunnerRequest, plane: PlaneDep, user: UserDep) -> TaskRunnerResponse:
    """Start a task and answer at once; its result is POSTed to ``callback_url`` when it ends.

    The same ``task_id`` again starts no second task: the answer names the task already started.
    """
    with plane.transaction() as session:
        found = runner_service.existing(session, user, payload.task_id)
        if found is not None:
            status = TaskStatus(found.status).alias
            return _started(found.id, f"task {found.id} was already started ({status}); no second task started")
        source = runner_service.source(session, plane.storage, user, payload)
    info, _created = submit_spec(plane, user, runner_service.spec(payload, source))
    return _started(info.id, f"Started task {info.id} ({source.file_name})")


def _started(task_id: str, message: str) -> TaskRunnerResponse:
    return TaskRunnerResponse(success=True, message=message, task_id=task_id)


def _refused(message: str, status: int) -> JSONResponse:
    return JSONResponse(TaskRunnerResponse(success=False, message=message).model_dump(), status_code=status)


def _validation_message(errors: Any) -> str:
    parts = []
    for error in list(errors)[:5]:
        field = ".".join(str(part) for part in error["loc"][1:]) or "body"
        parts.append(f"{field}: {str(error['msg']).removeprefix('Value error, ')}")
    return "; ".join(parts) or "invalid request"


def _error_message(exc: TaskyardError) -> str:
    if exc.field and not exc.message.startswith(exc.field):
        return f"{exc.field}: {exc.message}"
    return exc.message
