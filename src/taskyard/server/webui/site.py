"""Put the dashboard on an app: its routes, its static files, and the way visitors are sent to log in."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles

from taskyard.server.webui import fleet, flows, pages, tasks
from taskyard.server.webui.auth import LoginRequired
from taskyard.server.webui.render import STATIC


def add_dashboard(app: FastAPI) -> None:
    for module in (pages, tasks, fleet, flows):
        app.include_router(module.router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_exception_handler(LoginRequired, _to_login)


async def _to_login(request: Request, exc: Exception) -> RedirectResponse:
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={_quote(target)}", status_code=303)
    return RedirectResponse("/login", status_code=303)


def _quote(path: str) -> str:
    from urllib.parse import quote

    return quote(path, safe="/")
