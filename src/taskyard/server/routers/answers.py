"""Answers already of their route's response model, serialized once, by pydantic's own serializer.

FastAPI validates what an endpoint returns against the route's ``response_model`` again before it
serializes it. On the calls every task makes (its agent's, its submission, its wait and its log) that
costs about as much as building the answer, for a model that is valid by construction. The routes
keep their ``response_model`` for the OpenAPI document.
"""

from __future__ import annotations

from fastapi import Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from taskyard.errors import TaskyardError


def answer(model: BaseModel, status_code: int = 200) -> Response:
    """``model`` as the JSON answer, as FastAPI would have written it (by alias)."""
    return Response(model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json")


def invalid(errors: list) -> Response:
    """A 422 in the error model for pydantic's ``errors`` (each ``loc`` the path to its field), the first
    field at fault named."""
    first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
    field = ".".join(str(part) for part in first["loc"]) or None
    message = str(first["msg"]).removeprefix("Value error, ")
    details = [{"field": ".".join(str(p) for p in e["loc"]), "message": e["msg"]} for e in errors]
    body = {"code": "invalid_input", "message": f"{field}: {message}" if field else message, "field": field}
    return JSONResponse({"error": {**body, "details": details}}, status_code=422)


def error(exc: TaskyardError) -> JSONResponse:
    """The answer to one of our errors: its code and message (and field), with its HTTP status."""
    return JSONResponse({"error": exc.to_dict()}, status_code=exc.http_status)
