from __future__ import annotations

from fastapi import APIRouter

from taskyard.models import PoolInfo, PoolSpec
from taskyard.server.routers.deps import PlaneDep, UserDep
from taskyard.server.services import pools as pool_service

router = APIRouter(prefix="/pools", tags=["pools"])


@router.post("", status_code=201, response_model=PoolInfo)
def create(spec: PoolSpec, plane: PlaneDep, user: UserDep) -> PoolInfo:
    with plane.transaction() as session:
        return pool_service.create_pool(
            session,
            user,
            spec,
            backends=[plane.backend.name],
            sizes=plane.config.sizes,
            capacity=plane.backend.capacity(),
            server_max=plane.scheduler.max_workers,
        )


@router.get("", response_model=list[PoolInfo])
def list_pools(plane: PlaneDep, user: UserDep) -> list[PoolInfo]:
    with plane.transaction() as session:
        return pool_service.list_pools(session, user, default=plane.default_pool())


@router.get("/{name}", response_model=PoolInfo)
def show(name: str, plane: PlaneDep, user: UserDep) -> PoolInfo:
    with plane.transaction() as session:
        return pool_service.pool_info(session, user, name, default=plane.default_pool())


@router.delete("/{name}", status_code=204)
def delete(name: str, plane: PlaneDep, user: UserDep) -> None:
    with plane.transaction() as session:
        pool_service.delete_pool(session, user, name)
