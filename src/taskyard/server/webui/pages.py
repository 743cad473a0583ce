"""Log in and out, and the overview: counts by status and the latest tasks."""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response

from taskyard.server.db.models import UserRow
from taskyard.server.webui import render, views
from taskyard.server.webui.auth import COOKIE, LOGIN_COOKIE, action_user, find_user, form, new_login_value, page_user

router = APIRouter()
PageUser = Annotated[UserRow, Depends(page_user)]


@router.get("/login")
def login_form(request: Request, next: str = "/") -> Response:
    value = new_login_value()
    answer = render.page(request, "login.html", None, login_csrf=value, next=_local(next))
    _set_cookie(request, answer, LOGIN_COOKIE, value, max_age=3600)
    return answer


@router.post("/login")
async def login(request: Request) -> Response:
    fields = await form(request)
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(fields.get("csrf", ""), expected):
        return render.page(
            request, "login.html", None, 403, error="The form expired: try again.", login_csrf=expected, next="/"
        )
    token = fields.get("token", "").strip()
    user = await find_user(request.app.state.plane, token) if token else None
    if user is None:
        return render.page(
            request,
            "login.html",
            None,
            401,
            error="That token is not valid.",
            login_csrf=expected,
            next=_local(fields.get("next", "/")),
        )
    answer = RedirectResponse(_local(fields.get("next", "/")), status_code=303)
    _set_cookie(request, answer, COOKIE, token, max_age=30 * 86400)
    answer.delete_cookie(LOGIN_COOKIE)
    return answer


@router.post("/logout")
async def logout(request: Request, user: Annotated[UserRow, Depends(action_user)]) -> Response:
    answer = RedirectResponse("/login", status_code=303)
    answer.delete_cookie(COOKIE)
    return answer


@router.get("/")
def overview(request: Request, user: PageUser) -> Response:
    plane = request.app.state.plane
    with plane.transaction() as session:
        counts = views.counts_by_status(session, user)
        recent = views.task_table(session, user, views.TaskFilter()).rows[:10]
        workers = views.workers(session, user)
    return render.page(request, "overview.html", user, counts=counts, recent=recent, workers=workers)


def _set_cookie(request: Request, answer: Response, name: str, value: str, *, max_age: int) -> None:
    secure = request.url.scheme == "https"
    answer.set_cookie(name, value, max_age=max_age, httponly=True, samesite="strict", secure=secure, path="/")


def _local(target: str) -> str:
    """``target`` if it is a path on this site, else ``/``: the login never sends anyone elsewhere."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
