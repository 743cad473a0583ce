from __future__ import annotations

import os

from fastapi import APIRouter, Request

from taskyard import __version__
from taskyard.errors import Unauthorized
from taskyard.models import HealthInfo
from taskyard.server.routers.deps import PlaneDep, current_user

router = APIRouter(tags=["meta"])


@router.get("/health", response_model=HealthInfo, response_model_exclude_none=True)
async def health(request: Request, plane: PlaneDep) -> HealthInfo:
    """Whether the server answers; a caller with a valid token also gets its process id."""
    info = HealthInfo(status="ok", version=__version__)
    if "authorization" in request.headers:
        try:
            await current_user(request, plane)
        except Unauthorized:
            return info
        info.pid = os.getpid()
    return info
