"""The task pages: the live table, one task's page with its log following, and kill and rerun."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from taskyard.errors import Forbidden
from taskyard.models import TaskSpec
from taskyard.server.callbacks import delivery
from taskyard.server.db.models import UserRow
from taskyard.server.notifier import task_key
from taskyard.server.plane import Plane
from taskyard.server.routers.tasks import outputs_file, submit_spec
from taskyard.server.services import logs as log_service
from taskyard.server.services import outputs as output_service
from taskyard.server.services import tasks as task_service
from taskyard.server.webui import render, views
from taskyard.server.webui.auth import action_user, page_user

router = APIRouter()
PageUser = Annotated[UserRow, Depends(page_user)]
ActionUser = Annotated[UserRow, Depends(action_user)]
TAIL_BYTES = 64 * 1024
MAX_WAIT = 25.0


@router.get("/tasks")
def task_list(
    request: Request,
    user: PageUser,
    status: str = "",
    owner: str = "",
    pool: str = "",
    q: str = "",
    cursor: str | None = None,
) -> Response:
    wanted = views.TaskFilter(status=status, user=owner, pool=pool, search=q)
    with request.app.state.plane.transaction() as session:
        table = views.task_table(session, user, wanted, cursor)
    return render.page(request, "tasks.html", user, table=table, wanted=wanted)


@router.get("/tasks/{task_id}")
def task_page(task_id: str, request: Request, user: PageUser) -> Response:
    with request.app.state.plane.transaction() as session:
        details = _details(session, request.app.state.plane, user, task_id)
    return render.page(request, "task.html", user, **details)


def _details(session: Session, plane: Plane, user: UserRow, task_id: str) -> dict:
    row = task_service.get_task(session, user, task_id)
    info = views.task_detail(session, user, task_id)
    files = None
    if row.outputs_key is not None:
        files = output_service.list_files(plane.storage.path(row.outputs_key), partial=row.outputs_partial)
    return {
        "task": info,
        "size": views.size_of(row),
        "config": views.masked_worker_config(row),
        "callbacks": delivery.listing(session, row),
        "outputs": files,
        "log_text": log_service.tail(session, task_id, TAIL_BYTES),
        "log_seq": row.log_seq,
        "own": row.user_id == user.id,
    }


@router.get("/tasks/{task_id}/log")
async def log_after(task_id: str, request: Request, user: PageUser, after: int = 0, wait: float = 0) -> Response:
    """The task's log after chunk ``after``, as JSON, for the page to follow; ``wait`` holds it until there is more."""
    plane: Plane = request.app.state.plane

    def read(session: Session) -> dict:
        page = log_service.page(session, task_service.get_task(session, user, task_id), after)
        return {"text": "".join(chunk.text for chunk in page.chunks), "last_seq": page.last_seq, "done": page.done}

    async def check() -> tuple[bool, dict]:
        page = await plane.run(read)
        return bool(page["text"]) or page["done"], page

    page = await plane.notifier.poll(task_key(task_id), check, max(0.0, min(wait, MAX_WAIT)))
    return JSONResponse(page, headers={"Cache-Control": "no-store"})


@router.get("/tasks/{task_id}/outputs")
def outputs(task_id: str, request: Request, user: PageUser) -> FileResponse:
    plane: Plane = request.app.state.plane
    with plane.transaction() as session:
        task = task_service.get_task(session, user, task_id)
    return outputs_file(plane, task)


@router.post("/tasks/{task_id}/kill")
def kill(task_id: str, request: Request, user: ActionUser) -> Response:
    with request.app.state.plane.transaction() as session:
        task_service.request_kill(session, user, task_id)
    return RedirectResponse(f"/tasks/{task_id}", status_code=303)


@router.post("/tasks/{task_id}/rerun")
def rerun(task_id: str, request: Request, user: ActionUser) -> Response:
    """Submit the task again, as a new task with the same files and settings (callback token left out)."""
    plane: Plane = request.app.state.plane
    with plane.transaction() as session:
        task = task_service.get_task(session, user, task_id)
        if task.user_id != user.id:
            raise Forbidden("only the user who submitted a task can run it again")
        spec = TaskSpec.model_validate_json(task.spec).model_copy(update={"task_id": None})
    info, _ = submit_spec(plane, user, spec)
    return RedirectResponse(f"/tasks/{info.id}", status_code=303)


