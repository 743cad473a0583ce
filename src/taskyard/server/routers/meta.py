from __future__ import annotations

import os

from fastapi import APIRouter

from taskyard import __version__

router = APIRouter(tags=["meta"])


@router.get("/health")
def health() -> dict:
    return {"status": "ok", "version": __version__, "pid": os.getpid()}
