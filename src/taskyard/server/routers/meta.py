from __future__ import annotations

import os

from fastapi import APIRouter, Request

from taskyard import __version__, settings
from taskyard.errors import Unauthorized
from taskyard.models import HealthInfo
from taskyard.server.routers.deps import PlaneDep, current_user

router = APIRouter(tags=["meta"])


@router.get("/health", response_model=HealthInfo, response_model_exclude_none=True)
async def health(request: Request, plane: PlaneDep) -> HealthInfo:
    """Whether the server answers, its version and upload limit (the server's, which a client checks before
    it uploads); a caller with a valid token also gets its process id."""
    info = HealthInfo(status="ok", version=__version__, max_upload_bytes=settings.max_upload_bytes())
    if "authorization" in request.headers:
        try:
            await current_user(request, plane)
        except Unauthorized:
            return info
        info.pid = os.getpid()
    return info
