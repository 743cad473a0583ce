"""Answers already of their route's response model, serialized once, by pydantic's own serializer.

FastAPI validates what an endpoint returns against the route's ``response_model`` again before it
serializes it. On the calls every task makes (its agent's, a task's wait) that costs about as much
as building the answer, for a model that is valid by construction. The routes keep their
``response_model`` for the OpenAPI document.
"""

from __future__ import annotations

from fastapi import Response
from pydantic import BaseModel


def answer(model: BaseModel) -> Response:
    """``model`` as the JSON answer, as FastAPI would have written it (by alias)."""
    return Response(model.model_dump_json(by_alias=True), media_type="application/json")
