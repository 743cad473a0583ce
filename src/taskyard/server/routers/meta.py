from __future__ import annotations

import os

from fastapi import APIRouter

from taskyard import __version__, settings

router = APIRouter(tags=["meta"])


@router.get("/health")
def health() -> dict:
    """Alive, which version, and the limits a client checks before it uploads (the server's, not its own)."""
    return {"status": "ok", "version": __version__, "pid": os.getpid(), "max_upload_bytes": settings.max_upload_bytes()}
