"""A backend plug-in for tests, found through its entry point (``taskyard.backends`` group, ``hang``).

Put this folder on ``sys.path`` (or ``PYTHONPATH``, for a server process) and ``type = "hang"``
becomes a backend type. Its workers never start: a launch blocks until the backend is closed or
``hang_for`` seconds have passed. It stands for a remote backend that is down or unreachable.
"""

from __future__ import annotations

import threading
from typing import Literal

from pydantic import Field

from taskyard.backends.base import Backend, LaunchRequest, WorkerState
from taskyard.backends.registry import BackendContext, BackendType
from taskyard.backends.settings import BackendSettings


class HangSettings(BackendSettings):
    type: Literal["hang"] = "hang"
    hang_for: float = Field(default=120.0, gt=0)  # seconds a launch blocks, unless the backend is closed first


class HangBackend(Backend):
    name = "hang"
    images = {"python": "the Python the control plane runs (never started here)"}
    default_image = "python"

    def __init__(self, hang_for: float) -> None:
        self.hang_for = hang_for
        self._closed = threading.Event()

    def launch(self, request: LaunchRequest) -> dict:
        self._closed.wait(self.hang_for)
        return {"worker": request.worker_name}

    def poll(self, handle: dict) -> WorkerState:
        return WorkerState.GONE

    def terminate(self, handle: dict) -> None:
        pass

    def close(self) -> None:
        self._closed.set()


def make(settings: HangSettings, context: BackendContext) -> HangBackend:
    return HangBackend(settings.hang_for)


BACKEND_TYPE = BackendType("hang", HangSettings, "taskyard_test_backends:make", remote=True)
