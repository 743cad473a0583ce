from __future__ import annotations

from fastapi import APIRouter

from taskyard.models import UserCreate, UserInfo
from taskyard.server.routers.deps import AdminDep, PlaneDep, UserDep
from taskyard.server.services import users as user_service

router = APIRouter(tags=["users"])


@router.post("/users", status_code=201, response_model=UserInfo)
def add_user(body: UserCreate, plane: PlaneDep, admin: AdminDep) -> UserInfo:
    with plane.transaction() as session:
        row, token = user_service.create_user(session, body.name, is_admin=body.is_admin)
        return UserInfo(name=row.name, is_admin=row.is_admin, created_at=row.created_at, token=token)


@router.get("/users", response_model=list[UserInfo])
def list_users(plane: PlaneDep, admin: AdminDep) -> list[UserInfo]:
    with plane.transaction() as session:
        return [
            UserInfo(name=u.name, is_admin=u.is_admin, created_at=u.created_at)
            for u in user_service.list_users(session)
        ]


@router.get("/me", response_model=UserInfo)
def me(user: UserDep) -> UserInfo:
    return UserInfo(name=user.name, is_admin=user.is_admin, created_at=user.created_at)
