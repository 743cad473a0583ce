"""Workers (terminate) and pools (limit, backend, queue depth)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from taskyard.server.db.models import UserRow
from taskyard.server.services import pools as pool_service
from taskyard.server.services import workers as worker_service
from taskyard.server.webui import render, views
from taskyard.server.webui.auth import action_user, page_user

router = APIRouter()
PageUser = Annotated[UserRow, Depends(page_user)]
ActionUser = Annotated[UserRow, Depends(action_user)]


@router.get("/workers")
def workers(request: Request, user: PageUser, ended: bool = False) -> Response:
    with request.app.state.plane.transaction() as session:
        shown = views.workers(session, user, include_ended=ended)
    return render.page(request, "workers.html", user, workers=shown, ended=ended)


@router.post("/workers/{name}/terminate")
def terminate(name: str, request: Request, user: ActionUser) -> Response:
    with request.app.state.plane.transaction() as session:
        worker_service.request_terminate(session, user, name)
    return RedirectResponse("/workers", status_code=303)


@router.get("/pools")
def pools(request: Request, user: PageUser) -> Response:
    plane = request.app.state.plane
    with plane.transaction() as session:
        shown = pool_service.list_pools(session, user, default=plane.default_pool())
    return render.page(request, "pools.html", user, pools=shown)
