"""The local backend: a worker is a fresh working directory and a process group on this host."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from taskyard import settings
from taskyard.backends.base import Backend, LaunchRequest, WorkerState

TASK_PGID_FILE = "task.pgid"  # written by the agent: the process group of the task it runs
# A local machine is never reclaimed; a file of this name in a worker's folder makes it look so (tests).
PREEMPTED_FILE = "preempted"


class LocalBackend(Backend):
    name = "local"
    images = {
        "python": "this machine's Python, the one the control plane runs on",
        "practicus": "the same Python, under the name Practicus AI scripts ask for",
    }
    default_image = "python"

    def __init__(self, root: Path) -> None:
        self.root = root
        self._children: dict[int, subprocess.Popen] = {}

    def launch(self, request: LaunchRequest) -> dict:
        if request.image not in self.images:
            raise ValueError(f"the local backend has no image {request.image!r}; images: {', '.join(self.images)}")
        workdir = self.root / request.worker_name
        workdir.mkdir(parents=True)
        try:
            process = self._spawn(request, workdir)
        except OSError:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        self._children[process.pid] = process
        return {"pid": process.pid, "started": _start_time(process.pid), "dir": str(workdir)}

    def _spawn(self, request: LaunchRequest, workdir: Path) -> subprocess.Popen:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_")}
        env.update(
            TASKYARD_AGENT_URL=request.control_plane_url,
            TASKYARD_AGENT_TOKEN=request.agent_token,
            TASKYARD_WORKER_NAME=request.worker_name,
            TASKYARD_WORKER_DIR=str(workdir),
        )
        with open(workdir / "agent.log", "ab") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "taskyard.agent"],
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def poll(self, handle: dict) -> WorkerState:
        if (Path(handle["dir"]) / PREEMPTED_FILE).exists():
            return WorkerState.PREEMPTED
        return WorkerState.RUNNING if self._alive(handle) else WorkerState.GONE

    def terminate(self, handle: dict) -> None:
        pid, workdir = handle["pid"], Path(handle["dir"])
        task_group = _read_pgid(workdir / TASK_PGID_FILE)
        if self._alive(handle):
            _signal_group(pid, signal.SIGTERM)
            self._wait_gone(handle, settings.kill_grace() + 1)
            _signal_group(pid, signal.SIGKILL)
        if task_group is not None:  # the agent died (or was killed) before stopping its task
            _signal_group(task_group, signal.SIGKILL)
        self._wait_gone(handle, 5)
        self._children.pop(pid, None)
        shutil.rmtree(workdir, ignore_errors=True)

    def _alive(self, handle: dict) -> bool:
        """Is the worker's agent running? A pid the OS has given to another process does not count."""
        pid = handle["pid"]
        child = self._children.get(pid)
        if child is not None:
            return child.poll() is None
        started = _start_time(pid)
        return started is not None and started == handle.get("started") and not _is_zombie(pid)

    def _wait_gone(self, handle: dict, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._alive(handle) and time.monotonic() < deadline:
            time.sleep(0.01)


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _read_pgid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _start_time(pid: int) -> int | None:
    """When the process started (clock ticks since boot): with the pid, it names one process for good."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _is_zombie(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return False
