"""What runs on a Ray node for one worker: an actor that starts the agent and stops everything it started.

The agent is a child process of the actor, in a session of its own and a folder of its own on the
node (as on the local backend), so that its signal handlers, its process groups and its task are
its own and not those of a Ray worker process. It dies with the actor (``PR_SET_PDEATHSIG``). The
worker's token reaches the node as an argument of :meth:`WorkerHost.start` (never in the actor's
constructor, which Ray keeps to restart actors, nor in argv or the environment) and waits in a
file of the folder that the agent reads and removes as it starts.

This module imports only the standard library and :mod:`taskyard.backends.process_groups` at the top:
Ray loads it on the node by reference.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from taskyard.backends.process_groups import signal_group, task_group

TOKEN_FILE = "agent.token"  # read and removed by the agent as it starts
AGENT_LOG = "agent.log"
PASSED_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "PYTHONPATH", "SSL_CERT_FILE", "SSL_CERT_DIR", "HOME")
PR_SET_PDEATHSIG = 1


def default_root() -> str:
    """Where worker folders go on a node when the backend's settings name no folder."""
    return os.path.join(tempfile.gettempdir(), "taskyard-ray-workers")


class WorkerHost:
    """Hosts one worker at a time on one node; made as a Ray actor by :mod:`taskyard.backends.ray.backend`.

    Once its worker has been stopped, the host waits ``idle_seconds`` to be given another worker of
    the same shape (a Ray worker process is slow to start; an agent is not), then ends itself.
    Every call names the worker it is about: a call about a worker it no longer hosts finds nothing.
    """

    def __init__(self, root: str | None, idle_seconds: float) -> None:
        self.root = Path(root or default_root())
        self.idle_seconds = idle_seconds
        self.worker: str | None = None
        self.agent: subprocess.Popen | None = None
        self.place: dict = {}
        self.failed = False
        self._idle: threading.Timer | None = None

    @property
    def folder(self) -> Path:
        return self.root / (self.worker or "")

    def start(self, worker_name: str, url: str, token: str, agent_settings: dict) -> dict:
        """Start the worker's agent; returns where it runs (node id, pid, folder)."""
        import ray  # on the node, inside the actor

        if self._idle is not None:
            self._idle.cancel()
        if self.worker is not None:
            raise RuntimeError(f"this host already runs worker {self.worker}")
        self.worker, self.agent, self.place, self.failed = worker_name, None, {}, True  # failed: until it runs
        gpus = ",".join(str(device) for device in ray.get_gpu_ids())  # the devices Ray gave this actor
        self.folder.mkdir(parents=True, mode=0o700, exist_ok=False)
        agent_settings = {**agent_settings, "python": {"cache": str(self.root / "python-envs"), "uv": _uv()}}
        _write_private(self.folder / TOKEN_FILE, token)
        env = {key: value for key, value in os.environ.items() if key in PASSED_ENV or key.startswith("LC_")}
        env.update(TASKYARD_AGENT_URL=url, TASKYARD_AGENT_WORKER=json.dumps(agent_settings),
                   TASKYARD_WORKER_NAME=worker_name, TASKYARD_WORKER_DIR=str(self.folder),
                   CUDA_VISIBLE_DEVICES=gpus, NVIDIA_VISIBLE_DEVICES=gpus or "void")
        with open(self.folder / AGENT_LOG, "ab") as log:
            self.agent = subprocess.Popen(
                [sys.executable, "-m", "taskyard.agent"], cwd=self.folder, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, start_new_session=True, preexec_fn=_die_with_parent,
            )
        self.failed = False
        self.place = {"node_id": ray.get_runtime_context().get_node_id(), "pid": self.agent.pid,
                      "dir": str(self.folder)}
        return self.place

    def where(self, worker_name: str) -> dict:
        """Where the worker's agent runs (node id, pid, folder); empty when this host does not run it."""
        return self.place if worker_name == self.worker else {}

    def alive(self, worker_name: str) -> bool:
        """Is the worker's agent running, or about to? False once it has exited (whatever it left), could
        not start, or was stopped."""
        if worker_name != self.worker:
            return False
        return not self.failed and (self.agent is None or self.agent.poll() is None)

    def stop(self, worker_name: str, grace: float) -> None:
        """SIGTERM the agent's group, SIGKILL after ``grace``; then the task's group, and the folder."""
        if worker_name != self.worker:
            return
        first = task_group(self.folder)
        if self.agent is not None and self.agent.poll() is None:
            signal_group(self.agent.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.agent.wait(timeout=grace)
        if self.agent is not None:
            signal_group(self.agent.pid, signal.SIGKILL)
            self.agent.wait()
        for group in (first, task_group(self.folder)):
            if group is not None:
                signal_group(group, signal.SIGKILL)  # what the agent left when it died before stopping its task
        shutil.rmtree(self.folder, ignore_errors=True)
        self.worker, self.agent, self.place = None, None, {}
        self._idle = threading.Timer(self.idle_seconds, os._exit, (0,))  # not given another worker: end
        self._idle.daemon = True
        self._idle.start()

    def crash_agent(self) -> None:
        """Kill the agent alone, as if it had died on its own (tests): what it started lives on."""
        if self.agent is not None:
            os.kill(self.agent.pid, signal.SIGKILL)
            self.agent.wait()


def _uv() -> str | None:
    """uv beside this Python (as taskyard installs it), else on PATH; None: pip and venv build environments."""
    return shutil.which("uv", path=os.path.dirname(sys.executable)) or shutil.which("uv")


def _die_with_parent() -> None:
    """In the agent, before exec: SIGKILL when the actor's process ends (Linux only; a no-op elsewhere)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


