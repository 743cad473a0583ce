"""A backend plug-in for the capacity bench, found through its entry point (``taskyard.backends``, ``idle``).

Put this folder on the server's ``PYTHONPATH`` and ``type = "idle"`` becomes a backend type. Its
workers are agents played by one process of their own (``idle_agents.py``, started at the first
launch): each speaks the real agent protocol, and its tasks run nothing but succeed at once with
a one-line log. So the control plane does all it does for a task, and its agents cost it nothing
but their calls, as agents on other machines would.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Literal

from taskyard.backends.base import Backend, LaunchRequest, WorkerState
from taskyard.backends.registry import BackendContext, BackendType
from taskyard.backends.settings import BackendSettings

AGENTS = Path(__file__).with_name("idle_agents.py")
FINISHED = "idle-agents.finished"  # in the control plane's folder: one byte per task finished


class IdleSettings(BackendSettings):
    type: Literal["idle"] = "idle"


class IdleBackend(Backend):
    name = "idle"
    images = {"python": "agents whose tasks do no work (the capacity bench)"}
    default_image = "python"

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._lock = threading.Lock()
        self._agents: subprocess.Popen | None = None
        self._live: set[str] = set()

    def launch(self, request: LaunchRequest) -> dict:
        self._send(f"start {request.worker_name} {request.control_plane_url} {request.agent_token}")
        with self._lock:
            self._live.add(request.worker_name)
        return {"worker": request.worker_name}

    def poll(self, handle: dict) -> WorkerState:
        with self._lock:
            return WorkerState.RUNNING if handle["worker"] in self._live else WorkerState.GONE

    def terminate(self, handle: dict) -> None:
        with self._lock:
            self._live.discard(handle["worker"])
        self._send(f"stop {handle['worker']}")

    def close(self) -> None:
        with self._lock:
            agents, self._agents = self._agents, None
        if agents is not None and agents.stdin is not None:
            agents.stdin.close()
            agents.wait(10)

    def _send(self, line: str) -> None:
        """One order to the agents' process (the token goes through its stdin, never its argv)."""
        with self._lock:
            if self._agents is None or self._agents.poll() is not None:
                finished = str(self.data_dir / FINISHED)
                command = [sys.executable, str(AGENTS), finished]
                self._agents = subprocess.Popen(command, stdin=subprocess.PIPE, text=True)
            assert self._agents.stdin is not None
            self._agents.stdin.write(line + "\n")
            self._agents.stdin.flush()


def make(settings: IdleSettings, context: BackendContext) -> IdleBackend:
    return IdleBackend(context.data_dir)


BACKEND_TYPE = BackendType("idle", IdleSettings, "taskyard_bench_backends:make", remote=True)
