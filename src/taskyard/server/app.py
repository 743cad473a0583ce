"""The FastAPI application: routers, error handlers, and the scheduler's start and stop."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import Receive, Scope, Send

from taskyard import __version__
from taskyard.errors import TaskyardError
from taskyard.models import ErrorBody
from taskyard.server import agent_gate
from taskyard.server.config import ServerConfig
from taskyard.server.docs import add_docs
from taskyard.server.failsafe import Failsafe, internal_error
from taskyard.server.flows import router as flow_router
from taskyard.server.flows.driver import make_driver
from taskyard.server.metrics import router as metrics_router
from taskyard.server.plane import Plane, build_plane
from taskyard.server.routers import (
    API,
    agent,
    callbacks,
    folders,
    groups,
    images,
    meta,
    pools,
    secrets,
    sizes,
    task_runner,
    tasks,
    users,
    worker_commands,
    worker_files,
    workers,
)
from taskyard.server.routers.answers import error, invalid
from taskyard.server.services import users as user_service
from taskyard.server.webui.site import add_dashboard

_ERRORS = {
    400: "a body that cannot be read (not JSON, not UTF-8)",
    401: "no valid token",
    403: "the token's user may not do this",
    404: "no such thing (or not this user's)",
    409: "in conflict with what is there",
    413: "over a size limit",
    422: "a field out of its range or form; the field is named",
    500: "an unexpected error (see the server log)",
}
ERROR_RESPONSES: dict[int | str, dict] = {
    code: {"model": ErrorBody, "description": text} for code, text in _ERRORS.items()
}
log = logging.getLogger("taskyard.server")


class TaskyardApp(FastAPI):
    """The API: the agents' calls of every task through their gate (:mod:`taskyard.server.agent_gate`),
    the rest through FastAPI."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        call = agent_gate.route(scope)
        if call is None:
            await super().__call__(scope, receive, send)
        else:
            await agent_gate.serve(call, self.state.plane, scope, receive, send)


def create_app(config: ServerConfig, *, plane: Plane | None = None) -> FastAPI:
    plane = plane or build_plane(config)
    first_token = None
    with plane.transaction() as session:
        if config.admin_token:
            user_service.ensure_admin(session, user_service.ADMIN, config.admin_token)
        else:
            first_token = user_service.first_admin(session)  # on an empty database only

    flow_driver = make_driver(plane)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        flow_driver.start()
        yield
        flow_driver.stop()
        plane.scheduler.stop()
        plane.callbacks.stop()
        if plane.lease is not None:
            plane.lease.release()
        if plane.peers is not None:
            plane.peers.stop()
        if plane.roster is not None:
            plane.roster.stop()
        plane.database_threads.shutdown(wait=False)

    app = TaskyardApp(title="taskyard", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.plane = plane
    app.state.first_admin_token = first_token  # shown once by whoever serves the app
    add_docs(app)
    # Routes are matched in turn: the agents' calls, most of all, come first, then the tasks'.
    for module in (agent, tasks, meta, workers, worker_commands, pools, groups, sizes, users, secrets, callbacks,
                   task_runner, folders, flow_router, worker_files, images):
        app.include_router(module.router, prefix=API, responses=ERROR_RESPONSES)
    _document_errors_as_json(app)
    app.state.metrics_registry = metrics_router.make_registry(plane)
    app.include_router(metrics_router.router)
    add_dashboard(app)
    app.add_exception_handler(TaskyardError, _taskyard_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected_error)
    app.add_middleware(Failsafe)
    return app


def _document_errors_as_json(app: FastAPI) -> None:
    """Error answers are JSON on every route, those answering text too: say so in the OpenAPI."""
    build = app.openapi

    def openapi() -> dict:
        if app.openapi_schema is None:
            schema = build()
            for operation in (op for path in schema["paths"].values() for op in path.values()):
                for code, answer in operation.get("responses", {}).items():
                    content = answer.get("content", {})
                    if code != "200" and "text/plain" in content and int(code) in _ERRORS:
                        content["application/json"] = content.pop("text/plain")
        return app.openapi_schema or schema

    app.openapi = openapi  # type: ignore[method-assign]


async def _taskyard_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TaskyardError)  # the class it is registered for
    return error(exc)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own answers (an unreadable body, an unknown path or method) in the error model."""
    assert isinstance(exc, StarletteHTTPException)  # the class it is registered for
    codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
    body = {"code": codes.get(exc.status_code, "http_error"), "message": str(exc.detail)}
    return JSONResponse({"error": body}, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return internal_error(exc)


async def _validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)  # the class it is registered for
    return invalid([{**error, "loc": error["loc"][1:]} for error in exc.errors()])  # loc[0]: body, query...
