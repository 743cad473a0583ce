"""Request dependencies: the plane, the calling user, the calling agent's worker."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from taskyard.errors import Forbidden, Unauthorized
from taskyard.server.db.models import UserRow
from taskyard.server.plane import Plane
from taskyard.server.services import agent as agent_service
from taskyard.server.services import users as user_service

# The dependencies are ``async``: a sync one would cost a hop to the thread pool on every request.


async def get_plane(request: Request) -> Plane:
    return request.app.state.plane


def bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <token>'")
    return token.strip()


async def current_user(request: Request, plane: Annotated[Plane, Depends(get_plane)]) -> UserRow:
    token = bearer(request)
    user = plane.tokens.get(token)
    if user is None:
        user = await plane.read(lambda session: user_service.authenticate(session, token))
        plane.tokens.put(token, user)
    return user


async def admin_user(user: Annotated[UserRow, Depends(current_user)]) -> UserRow:
    if not user.is_admin:
        raise Forbidden("only an admin can do this")
    return user


async def current_worker(request: Request, plane: Annotated[Plane, Depends(get_plane)]) -> str:
    """The name of the worker whose agent calls; a token names one worker for good, so it is cached
    (see taskyard.server.worker_tokens).

    Whether that worker may still call is checked in each request's own transaction.
    """
    token = bearer(request)
    name = plane.worker_tokens.get(token)
    if name is None:
        name = await plane.read(lambda session: agent_service.authenticate(session, token).name)
        plane.worker_tokens.put(token, name)
    return name


PlaneDep = Annotated[Plane, Depends(get_plane)]
UserDep = Annotated[UserRow, Depends(current_user)]
AdminDep = Annotated[UserRow, Depends(admin_user)]
WorkerDep = Annotated[str, Depends(current_worker)]
