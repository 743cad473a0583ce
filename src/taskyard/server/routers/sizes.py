from __future__ import annotations

from fastapi import APIRouter

from taskyard.errors import InvalidInput
from taskyard.models import SizeCatalog
from taskyard.server.routers.deps import PlaneDep, UserDep
from taskyard.server.services import sizes as size_service

router = APIRouter(prefix="/sizes", tags=["sizes"])


@router.get("", response_model=SizeCatalog)
async def list_sizes(plane: PlaneDep, user: UserDep, backend: str | None = None) -> SizeCatalog:
    """The worker sizes this server offers, and which of them a backend can hold: ``backend`` (a configured
    backend's name), or the default pool's."""
    backends = plane.backends()
    if backend is not None and backend not in backends:
        raise InvalidInput(f"no backend {backend!r}; backends: {', '.join(backends)}", field="backend")
    chosen = backends[backend] if backend is not None else plane.backend
    return size_service.catalog(plane.config.sizes, chosen.capacity())
