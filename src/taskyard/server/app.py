"""The FastAPI application: routers, error handlers, and the scheduler's start and stop."""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from taskyard import __version__
from taskyard.errors import TaskyardError
from taskyard.server.config import ServerConfig
from taskyard.server.docs import add_docs
from taskyard.server.flows import router as flow_router
from taskyard.server.flows.driver import make_driver
from taskyard.server.plane import Plane, build_plane
from taskyard.server.routers import (
    agent,
    callbacks,
    folders,
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
from taskyard.server.services import users as user_service

API = "/api/v1"
log = logging.getLogger("taskyard.server")


def create_app(config: ServerConfig, *, plane: Plane | None = None) -> FastAPI:
    plane = plane or build_plane(config)
    if config.admin_token:
        with plane.transaction() as session:
            user_service.ensure_admin(session, "admin", config.admin_token)

    flow_driver = make_driver(plane)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        flow_driver.start()
        yield
        flow_driver.stop()
        plane.scheduler.stop()
        plane.callbacks.stop()

    app = FastAPI(title="taskyard", version=__version__, lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.plane = plane
    add_docs(app)
    for module in (meta, tasks, workers, worker_commands, pools, sizes, users, secrets, agent, callbacks, task_runner,
                   folders):
        app.include_router(module.router, prefix=API)
    for module in (worker_files, images):
        app.include_router(module.router, prefix=API)
    app.include_router(flow_router.router, prefix=API)
    app.add_exception_handler(TaskyardError, _taskyard_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
    return app


async def _taskyard_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TaskyardError)  # the class it is registered for
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    body = {"code": "internal", "message": f"internal error ({type(exc).__name__}); see the server log"}
    return JSONResponse({"error": body}, status_code=500)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)  # the class it is registered for
    errors = exc.errors()
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = ".".join(str(part) for part in first["loc"][1:]) or None
    message = str(first["msg"]).removeprefix("Value error, ")
    details = [{"field": ".".join(str(p) for p in e["loc"][1:]), "message": e["msg"]} for e in errors]
    body = {"code": "invalid_input", "message": f"{field}: {message}" if field else message, "field": field}
    return JSONResponse({"error": {**body, "details": details}}, status_code=422)
