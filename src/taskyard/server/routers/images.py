from __future__ import annotations

from fastapi import APIRouter

from taskyard.models import ImageInfo
from taskyard.server.routers.deps import PlaneDep, UserDep

router = APIRouter(prefix="/images", tags=["images"])


@router.get("", response_model=list[ImageInfo])
async def list_images(plane: PlaneDep, user: UserDep) -> list[ImageInfo]:
    """The worker images the server's backend can start (``WorkerConfig(worker_image=...)``), the default first."""
    backend = plane.backend
    names = sorted(backend.images, key=lambda name: name != backend.default_image)
    return [ImageInfo(name=name, description=backend.images[name], backend=backend.name,
                      default=name == backend.default_image) for name in names]
