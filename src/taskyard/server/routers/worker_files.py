"""Files into and out of a worker's task folder, through the control plane (``Worker.upload_files`` /
``download_files``): the archive goes to the worker's agent as a command, bounded by the upload limit."""

from __future__ import annotations

import base64

from fastapi import APIRouter, Request, Response

from taskyard import settings
from taskyard.bundle import raise_limit_hint
from taskyard.errors import TooLarge
from taskyard.server.routers.deps import PlaneDep, UserDep
from taskyard.server.services import worker_commands as command_service

router = APIRouter(prefix="/workers", tags=["workers"])
FILES_WAIT = 300.0  # seconds the agent may take to unpack or pack the files


@router.put("/{name}/files")
async def upload(name: str, request: Request, plane: PlaneDep, user: UserDep, destination: str = ".") -> dict:
    """Unpack the gzip'd tar of the body into ``destination`` (relative to the worker's task folder);
    the names written."""
    worker = await plane.run(lambda s: command_service.reachable(s, user, name))
    archive = await _read(request, settings.max_upload_bytes())
    order = {"kind": "upload", "archive": base64.b64encode(archive).decode(), "destination": destination,
             "max_unpack_bytes": settings.max_unpack_bytes()}
    return await plane.commands.ask(worker, order, FILES_WAIT)


@router.get("/{name}/files")
async def download(name: str, plane: PlaneDep, user: UserDep, source: str = ".") -> Response:
    """``source`` of the worker's task folder (a file or a folder) as a gzip'd tar."""
    worker = await plane.run(lambda s: command_service.reachable(s, user, name))
    order = {"kind": "download", "source": source, "max_bytes": settings.max_upload_bytes()}
    answer = await plane.commands.ask(worker, order, FILES_WAIT)
    return Response(base64.b64decode(answer["archive"]), media_type="application/gzip")


async def _read(request: Request, limit: int) -> bytes:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise TooLarge(
                f"the files pack to more than this server's upload limit of {limit / (1024 * 1024):.3g} MB "
                f"(TASKYARD_MAX_UPLOAD_MB where it runs). {raise_limit_hint(len(data))}", field="source"
            )
    return bytes(data)
