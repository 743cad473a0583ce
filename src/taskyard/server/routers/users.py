from __future__ import annotations

from fastapi import APIRouter

from taskyard.models import TokenRotation, UserCreate, UserInfo
from taskyard.server.db.models import UserRow
from taskyard.server.routers.deps import AdminDep, PlaneDep, UserDep
from taskyard.server.services import users as user_service

router = APIRouter(tags=["users"])


def _info(row: UserRow, token: str | None = None) -> UserInfo:
    return UserInfo(
        name=row.name,
        is_admin=row.is_admin,
        created_at=row.created_at,
        token_expires_at=row.token_expires_at,
        token=token,
    )


@router.post("/users", status_code=201, response_model=UserInfo)
def add_user(body: UserCreate, plane: PlaneDep, admin: AdminDep) -> UserInfo:
    with plane.transaction() as session:
        row, token = user_service.create_user(session, body.name, is_admin=body.is_admin, expires_in=body.expires_in)
        return _info(row, token)


@router.get("/users", response_model=list[UserInfo])
def list_users(plane: PlaneDep, admin: AdminDep) -> list[UserInfo]:
    with plane.transaction() as session:
        return [_info(u) for u in user_service.list_users(session)]


@router.delete("/users/{name}", status_code=204)
def remove_user(name: str, plane: PlaneDep, admin: AdminDep) -> None:
    """Remove a user: its token stops working at once; its tasks stay in the history."""
    with plane.transaction() as session:
        user_service.remove_user(session, admin, name)
    plane.tokens.clear()


@router.post("/users/{name}/token", response_model=UserInfo)
def rotate_token(name: str, body: TokenRotation, plane: PlaneDep, user: UserDep) -> UserInfo:
    """A new token for ``name`` (an admin, or the user itself); the old one stops working at once."""
    with plane.transaction() as session:
        row, token = user_service.rotate_token(session, user, name, expires_in=body.expires_in)
        info = _info(row, token)
    plane.tokens.clear()
    return info


@router.get("/me", response_model=UserInfo)
def me(user: UserDep) -> UserInfo:
    return _info(user)
