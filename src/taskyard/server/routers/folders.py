from __future__ import annotations

from functools import partial
from typing import Annotated

from fastapi import APIRouter, Query, Request

from taskyard import settings
from taskyard.server.db.models import FolderRow
from taskyard.server.routers.deps import PlaneDep, UserDep
from taskyard.server.services import folders as folder_service
from taskyard.server.storage import bundle_key
from taskyard.server.uploads import check_archive
from taskyard.task_runner import FolderInfo

router = APIRouter(prefix="/folders", tags=["folders"])
Sha256 = Annotated[str, Query(pattern=r"^[0-9a-f]{64}$", description="The sha256 of the packed folder (tar.gz)")]


@router.put("/{name}", response_model=FolderInfo)
async def push(name: str, sha256: Sha256, request: Request, plane: PlaneDep, user: UserDep) -> FolderInfo:
    """Store a packed task folder (the request body, a tar.gz) under ``name``, replacing what it named."""
    folder_service.check_name(name)
    key = bundle_key(user.id, sha256)
    if not plane.storage.exists(key):
        check = partial(check_archive, max_unpack=settings.max_unpack_bytes())
        await plane.storage.put_stream(
            key, request.stream(), max_bytes=settings.max_upload_bytes(), sha256=sha256, check=check
        )
    size = plane.storage.path(key).stat().st_size
    return await plane.run(lambda s: _info(folder_service.save(s, user, name, sha256, size)))


@router.get("", response_model=list[FolderInfo])
def listing(plane: PlaneDep, user: UserDep) -> list[FolderInfo]:
    with plane.transaction() as session:
        return [_info(row) for row in folder_service.listing(session, user)]


def _info(row: FolderRow) -> FolderInfo:
    return FolderInfo(
        name=row.name, bundle_sha256=row.bundle_sha256, bundle_size=row.bundle_size, updated_at=row.updated_at
    )
