from __future__ import annotations

from fastapi import APIRouter

from taskyard.models import SizeCatalog
from taskyard.server.routers.deps import PlaneDep, UserDep
from taskyard.server.services import sizes as size_service

router = APIRouter(prefix="/sizes", tags=["sizes"])


@router.get("", response_model=SizeCatalog)
async def list_sizes(plane: PlaneDep, user: UserDep) -> SizeCatalog:
    """The worker sizes this server offers, and which of them its backend's host can hold."""
    return size_service.catalog(plane.config.sizes, plane.backend.capacity())
