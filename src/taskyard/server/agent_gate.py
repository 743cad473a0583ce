"""The agent calls every task makes, dispatched straight to their endpoints.

FastAPI spends more on a request than these endpoints do: its telemetry check, its middlewares
(errors, body limit, exceptions, exit stack), matching the path among all the API's routes, then
solving the route's dependencies. Agents make most of the requests a control plane answers. For
five calls (``GET next``, ``POST heartbeat``, and a task's ``events``, ``logs`` and ``finish``),
the app (:class:`taskyard.server.app.TaskyardApp`) skips all that: it authenticates the agent's
token, reads ``wait`` and the JSON body into the route's model as the route would, and calls the
same endpoint function of :mod:`taskyard.server.routers.agent`. The answers, errors included, are
those the route documents; every other request, and the OpenAPI document, are FastAPI's.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable
from urllib.parse import parse_qsl

from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

from taskyard.errors import TaskyardError
from taskyard.models import AgentEvent, AgentFinish, AgentLogs
from taskyard.server.failsafe import internal_error
from taskyard.server.plane import Plane
from taskyard.server.routers import API, agent
from taskyard.server.routers.answers import error, invalid
from taskyard.server.routers.deps import current_worker
from taskyard.server.routers.params import Seconds

PREFIX = API + agent.router.prefix
UNREADABLE = "There was an error parsing the body"  # FastAPI's words for a body that is not UTF-8
Call = Callable[[Plane, Request], Awaitable[Response]]
log = logging.getLogger("taskyard.server")
_SECONDS = TypeAdapter(Seconds)  # the routes' own parameter, bounds and all
_TASK_CALL = re.compile(r"/tasks/(?P<task_id>[^/]+)/(?P<call>events|logs|finish)")
_TASK_CALLS: dict[str, tuple[Callable, type[BaseModel]]] = {
    "events": (agent.event, AgentEvent),
    "logs": (agent.logs, AgentLogs),
    "finish": (agent.finish, AgentFinish),
}


async def _waiting(endpoint: Callable, plane: Plane, request: Request) -> Response:
    worker = await current_worker(request, plane)
    try:
        wait = _wait(request.scope)
    except ValidationError as exc:
        return invalid([{**error, "loc": ("wait",)} for error in exc.errors()])
    return await endpoint(request=request, plane=plane, worker=worker, wait=wait)


_WAITING: dict[tuple[str, str], Call] = {
    ("GET", "/next"): lambda plane, request: _waiting(agent.next_task, plane, request),
    ("POST", "/heartbeat"): lambda plane, request: _waiting(agent.heartbeat, plane, request),
}


def route(scope: Scope) -> Call | None:
    """The gate's call for this request, or None for FastAPI's routes."""
    path: str = scope["path"] if scope["type"] == "http" else ""
    if not path.startswith(PREFIX):
        return None
    rest, method = path[len(PREFIX):], scope["method"]
    call = _WAITING.get((method, rest))
    if call is not None or method != "POST":
        return call
    found = _TASK_CALL.fullmatch(rest)
    if found is None:
        return None
    endpoint, model = _TASK_CALLS[found["call"]]
    return lambda plane, request: _task_call(endpoint, model, found["task_id"], plane, request)


async def serve(call: Call, plane: Plane, scope: Scope, receive: Receive, send: Send) -> None:
    try:
        response = await call(plane, Request(scope, receive))
    except TaskyardError as exc:
        response = error(exc)
    except Exception as exc:
        log.exception("unexpected error on %s %s", scope["method"], scope["path"])
        response = internal_error(exc)
    await response(scope, receive, send)


async def _task_call(
    endpoint: Callable, model: type[BaseModel], task_id: str, plane: Plane, request: Request
) -> Response:
    worker = await current_worker(request, plane)
    raw = await request.body()
    if not raw:
        return invalid([{"loc": (), "msg": "Field required"}])
    try:  # read as FastAPI reads a JSON body: parsed when it says it is JSON, else its bytes (refused)
        given = json.loads(raw) if _says_json(request.headers.get("content-type")) else raw
        body = model.model_validate(given, from_attributes=True)
    except json.JSONDecodeError as exc:
        return invalid([{"loc": (exc.pos,), "msg": "JSON decode error"}])
    except UnicodeDecodeError:
        return JSONResponse({"error": {"code": "bad_request", "message": UNREADABLE}}, status_code=400)
    except ValidationError as exc:
        return invalid(exc.errors())
    return await endpoint(task_id=task_id, body=body, plane=plane, worker=worker)


def _says_json(content_type: str | None) -> bool:
    kind = (content_type or "").partition(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _wait(scope: Scope) -> float:
    """The ``wait`` query parameter (the last one given, as FastAPI reads it), 0 when absent."""
    given = [value for key, value in parse_qsl(scope["query_string"].decode("latin-1")) if key == "wait"]
    return _SECONDS.validate_python(given[-1]) if given else 0.0
