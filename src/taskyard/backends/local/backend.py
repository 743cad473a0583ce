"""The local backend: a worker is a fresh folder, its own cgroups and a sandboxed process tree on this host.

Each worker gets what its size says on the whole worker (:mod:`.limits`), and its task runs in a
bubblewrap sandbox when the host has one (:mod:`.sandbox`). The agent is forked from a zygote that
never sees a token: each worker's token waits in a file of its own folder, which the agent reads
and removes as it starts.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from taskyard import settings
from taskyard.backends.base import Backend, LaunchRequest, Resources, WorkerState
from taskyard.backends.local import host, limits, python_envs
from taskyard.backends.local.sandbox import make_policy, worker_uid
from taskyard.backends.process_groups import signal_group, task_group

log = logging.getLogger("taskyard.backends.local")

TOKEN_FILE = "agent.token"  # the worker's token, read and removed by its agent as it starts
# A local machine is never reclaimed; a file of this name in a worker's folder makes it look so (tests).
PREEMPTED_FILE = "preempted"
# What of the control plane's environment an agent (and so a task) gets: nothing else of it.
PASSED_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "TERM", "PYTHONPATH", "SSL_CERT_FILE", "SSL_CERT_DIR")


class LocalBackend(Backend):
    name = "local"
    images = {
        "python": "this machine's Python, the one the control plane runs on",
        "practicus": "the same Python, under the name Practicus AI scripts ask for",
    }
    default_image = "python"

    def __init__(self, root: Path, *, sandbox: str = "auto", gpus: tuple[str, ...] | None = None) -> None:
        self.root = root
        _make_private(root)
        self._capacity = host.host_capacity(gpus)
        self.policy = make_policy(sandbox, hidden=(root.parent, Path.home()))
        self._cores = limits.Cores()
        self._cgroups = limits.find_cgroups(f"taskyard-{os.getpid()}-{root.parent.name}"[:64])
        self._zygote = Zygote(root / "zygote.log")
        self._uv = python_envs.find_uv()

    def capacity(self) -> Resources:
        return self._capacity

    def python_venvs(self) -> dict[str, str]:
        return python_envs.venvs()

    @property
    def sandboxed(self) -> bool:
        return self.policy.bwrap is not None

    def launch(self, request: LaunchRequest) -> dict:
        if request.image not in self.images:
            raise ValueError(f"the local backend has no image {request.image!r}; images: {', '.join(self.images)}")
        self.policy.check()
        workdir = self.root / request.worker_name
        workdir.mkdir(mode=0o700)
        try:
            worker_limits = self._limits(request)
            pid = self._start_agent(request, workdir, worker_limits)
        except BaseException:
            self._discard(workdir, locals().get("worker_limits"))
            raise
        return {"pid": pid, "started": _start_time(pid), "dir": str(workdir), "sandboxed": self.sandboxed,
                "limits": worker_limits.kind, "cgroups": list(worker_limits.cgroups)}

    def _cpus(self, request: LaunchRequest) -> list[int]:
        if request.resources is None:
            return []
        return list(self._cores.take(request.worker_name, request.resources.cpu))

    def _limits(self, request: LaunchRequest) -> limits.Limits:
        if request.resources is None:
            return limits.Limits("none")
        if self._cgroups is not None:
            with contextlib.suppress(OSError):
                return self._cgroups.create(request.worker_name, request.resources)
            log.warning("could not make cgroups for worker %s; limiting it with rlimits", request.worker_name)
        return limits.rlimits_for(request.resources, own_user=worker_uid(request.worker_name) is not None)

    def _start_agent(self, request: LaunchRequest, workdir: Path, worker_limits: limits.Limits) -> int:
        _write_private(workdir / TOKEN_FILE, request.agent_token)
        env = {key: value for key, value in os.environ.items() if key in PASSED_ENV or key.startswith("LC_")}
        env.update(
            TASKYARD_AGENT_URL=request.control_plane_url,
            TASKYARD_AGENT_WORKER=json.dumps(self._agent_settings(request, worker_limits)),
            TASKYARD_WORKER_NAME=request.worker_name,
            TASKYARD_WORKER_DIR=str(workdir),
            **_gpu_env(request.resources),
        )
        cgroups, cpus = list(worker_limits.cgroups), self._cpus(request)
        return self._zygote.spawn(workdir, env, workdir / "agent.log", cgroups, cpus)

    def _agent_settings(self, request: LaunchRequest, worker_limits: limits.Limits) -> dict:
        memory = request.resources.memory if request.resources is not None else None
        return {"size": request.size, "memory": memory, "limits": worker_limits.to_json(),
                "sandbox": self.policy.agent_settings(request.worker_name),
                "python": python_envs.agent_settings(self.root.parent, self._uv)}

    def _discard(self, workdir: Path, worker_limits: limits.Limits | None) -> None:
        self._cores.release(workdir.name)
        if worker_limits is not None:
            limits.remove(worker_limits.cgroups)
        shutil.rmtree(workdir, ignore_errors=True)

    def close(self) -> None:
        self._zygote.close()

    def poll(self, handle: dict) -> WorkerState:
        if (Path(handle["dir"]) / PREEMPTED_FILE).exists():
            return WorkerState.PREEMPTED
        return WorkerState.RUNNING if self._alive(handle) else WorkerState.GONE

    def terminate(self, handle: dict) -> None:
        pid, workdir = handle["pid"], Path(handle["dir"])
        group = task_group(workdir)
        if self._alive(handle):
            signal_group(pid, signal.SIGTERM)
            self._wait_gone(handle, settings.kill_grace() + 1)
            signal_group(pid, signal.SIGKILL)
        if group is not None:  # the agent died (or was killed) before stopping its task
            signal_group(group, signal.SIGKILL)
        limits.remove(handle.get("cgroups", ()))  # whatever is left in the worker's cgroups
        self._cores.release(workdir.name)
        self._wait_gone(handle, 5)
        shutil.rmtree(workdir, ignore_errors=True)

    def _alive(self, handle: dict) -> bool:
        """Is the worker's agent running? A pid the OS has given to another process does not count."""
        pid = handle["pid"]
        started = _start_time(pid)
        return started is not None and started == handle.get("started") and not _is_zombie(pid)

    def _wait_gone(self, handle: dict, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self._alive(handle) and time.monotonic() < deadline:
            time.sleep(0.01)


def _gpu_env(resources: Resources | None) -> dict[str, str]:
    """The devices a worker may use; none (an empty list) when its size has no GPU."""
    devices = ",".join(resources.gpus) if resources is not None else ""
    return {"CUDA_VISIBLE_DEVICES": devices, "NVIDIA_VISIBLE_DEVICES": devices or "void"}


def _make_private(folder: Path) -> None:
    """Make ``folder`` (and its parent, the control plane's home) this user's only."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in (folder, folder.parent):
        with contextlib.suppress(OSError):
            path.chmod(0o700)


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


class Zygote:
    """The agent zygote (``taskyard.agent.zygote``): started when first needed, and again if it died."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()

    def spawn(self, cwd: Path, env: dict[str, str], log: Path, cgroups: list[str], cpus: list[int]) -> int:
        """Start an agent in ``cwd`` with exactly ``env``, in ``cgroups``, on ``cpus`` (all: empty); return its pid.

        Its output goes to ``log``."""
        order = {"cwd": str(cwd), "env": env, "log": str(log), "cgroups": cgroups, "cpus": cpus}
        request = json.dumps(order).encode() + b"\n"
        with self._lock:
            for _ in range(2):  # a zygote found dead is started again, once
                answer = self._ask(self._running(), request)
                if answer:
                    return json.loads(answer)["pid"]
        raise OSError(f"the agent zygote stopped; its log is {self.log_path}")

    @staticmethod
    def _ask(process: subprocess.Popen, request: bytes) -> bytes:
        stdin, stdout = _pipes(process)
        try:
            stdin.write(request)
            stdin.flush()
            answer = stdout.readline()
        except OSError:
            answer = b""
        if not answer:
            process.wait(timeout=10)  # it has ended: reap it, so that it is started again
        return answer

    def close(self) -> None:
        """End the zygote (it stops when its stdin closes); the agents it started go on."""
        with self._lock:
            process, self._process = self._process, None
        if process is not None:
            _end(process)

    def _running(self) -> subprocess.Popen:
        if self._process is not None and self._process.poll() is not None:
            _end(self._process)
            self._process = None
        if self._process is None:
            with open(self.log_path, "ab") as log:
                self._process = subprocess.Popen(
                    [sys.executable, "-m", "taskyard.agent.zygote"],
                    cwd=self.log_path.parent,
                    env=_without_settings(os.environ),
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    start_new_session=True,
                )
        return self._process


def _end(zygote: subprocess.Popen) -> None:
    """Close our ends of its pipes (it stops when its stdin closes) and reap it."""
    for pipe in _pipes(zygote):
        with contextlib.suppress(OSError):
            pipe.close()
    zygote.wait(timeout=10)


def _pipes(zygote: subprocess.Popen) -> tuple[IO[bytes], IO[bytes]]:
    """Its stdin and stdout: pipes, as :meth:`Zygote._running` starts it."""
    assert zygote.stdin is not None and zygote.stdout is not None
    return zygote.stdin, zygote.stdout


def _without_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The environment without the control plane's own settings (its token, home, database...)."""
    return {key: value for key, value in environ.items() if not key.startswith("TASKYARD_")}




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
