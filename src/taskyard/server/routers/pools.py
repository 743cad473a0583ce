from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from taskyard.errors import NotFound
from taskyard.models import PoolInfo, PoolSpec
from taskyard.server.db.models import PoolRow
from taskyard.server.routers.deps import PlaneDep, UserDep
from taskyard.server.services import pools as pool_service

router = APIRouter(prefix="/pools", tags=["pools"])


@router.post("", status_code=201, response_model=PoolInfo)
def create(spec: PoolSpec, plane: PlaneDep, user: UserDep) -> PoolInfo:
    with plane.transaction() as session:
        row = pool_service.create_pool(session, user, spec, backends=[plane.backend.name])
        return pool_service.to_info(session, spec, row)


@router.get("", response_model=list[PoolInfo])
def list_pools(plane: PlaneDep, user: UserDep) -> list[PoolInfo]:
    with plane.transaction() as session:
        rows = {row.name: row for row in session.scalars(select(PoolRow))}
        return [pool_service.to_info(session, spec, rows.get(spec.name)) for spec in pool_service.all_specs(session)]


@router.get("/{name}", response_model=PoolInfo)
def show(name: str, plane: PlaneDep, user: UserDep) -> PoolInfo:
    with plane.transaction() as session:
        row = session.get(PoolRow, name)
        if row is None and name != pool_service.DEFAULT:
            raise NotFound(f"no pool {name!r}")
        return pool_service.to_info(session, pool_service.get_spec(session, name), row)


@router.delete("/{name}", status_code=204)
def delete(name: str, plane: PlaneDep, user: UserDep) -> None:
    with plane.transaction() as session:
        pool_service.delete_pool(session, user, name)
