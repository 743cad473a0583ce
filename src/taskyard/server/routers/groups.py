"""Groups of users (admins make and fill them); a pool shared with ``group:NAME`` is usable by its members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from taskyard.models import GroupCreate, GroupInfo
from taskyard.server.routers.deps import AdminDep, PlaneDep, UserDep
from taskyard.server.services import groups as group_service

router = APIRouter(prefix="/groups", tags=["groups"])

_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
GroupName = Annotated[str, Path(pattern=_NAME, description="a group name")]
UserName = Annotated[str, Path(pattern=_NAME, description="a user name")]


@router.post("", status_code=201, response_model=GroupInfo)
def create(body: GroupCreate, plane: PlaneDep, admin: AdminDep) -> GroupInfo:
    with plane.transaction() as session:
        return group_service.to_info(session, group_service.create_group(session, body.name))


@router.get("", response_model=list[GroupInfo])
def list_groups(plane: PlaneDep, user: UserDep) -> list[GroupInfo]:
    """Every group for an admin; your own groups for anyone else."""
    with plane.transaction() as session:
        return [group_service.to_info(session, row) for row in group_service.list_groups(session, user)]


@router.get("/{name}", response_model=GroupInfo)
def show(name: GroupName, plane: PlaneDep, user: UserDep) -> GroupInfo:
    with plane.transaction() as session:
        return group_service.to_info(session, group_service.visible_group(session, user, name))


@router.put("/{name}/members/{user_name}", response_model=GroupInfo)
def add_member(name: GroupName, user_name: UserName, plane: PlaneDep, admin: AdminDep) -> GroupInfo:
    """Put a user in the group (nothing changes if they are in it already)."""
    with plane.transaction() as session:
        return group_service.to_info(session, group_service.add_member(session, name, user_name))


@router.delete("/{name}/members/{user_name}", response_model=GroupInfo)
def remove_member(name: GroupName, user_name: UserName, plane: PlaneDep, admin: AdminDep) -> GroupInfo:
    """Take a user out of the group: the pools shared with it are no longer theirs, at once."""
    with plane.transaction() as session:
        return group_service.to_info(session, group_service.remove_member(session, name, user_name))


@router.delete("/{name}", status_code=204)
def delete(name: GroupName, plane: PlaneDep, admin: AdminDep) -> None:
    """Delete the group: its members lose the pools shared with it, at once."""
    with plane.transaction() as session:
        group_service.delete_group(session, name)
