"""What the hostile-task tests share: a control plane to attack, the probe kit its tasks use, and host-side looks.

A hostile task prints one ``RESULT {json}`` line: for each thing it tried, what it got (``"got ..."``)
or the name of the exception that stopped it. The tests read that line, and look at the host as
root to show that what the task went for is really there.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import taskyard
from taskyard.client import Client

from support import Server, environ_of, wait_for, write

REFUSED = {"FileNotFoundError", "PermissionError", "NotADirectoryError"}  # what a wall looks like to a reader

PROBE = '''
"""The probe kit, imported by each hostile task: try things, and say what came of each."""
import json, os, time


def attempt(action):
    """What ``action()`` gave, as ``"got ..."``, or the name of the exception it raised."""
    try:
        value = action()
    except Exception as exc:
        return type(exc).__name__
    return "got " + repr(value)[:300]


def read(path, size=64):
    """The first bytes of ``path``; never waits (a pipe found in /proc/<pid>/fd has nothing to give)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def report(**found):
    print("RESULT " + json.dumps(found), flush=True)


def hold(seconds=30):
    """Wait until the test drops a file named ``release`` in this folder (or ``seconds`` pass)."""
    deadline = time.monotonic() + seconds
    while not os.path.exists("release") and time.monotonic() < deadline:
        time.sleep(0.02)
'''


# Small workers: the few tasks of a test run side by side even on a host of one core.
SIZES = """
[sizes.X-Small]
cpu = 0.25
memory = "512MiB"
default = true
"""


def start_plane() -> Iterator[Server]:
    """A control plane whose home is outside ``/tmp``, and 0755 before the server makes it private.

    Every task has a ``/tmp`` of its own, so a home under it would be out of reach whatever the
    sandbox hides: here it is the sandbox (and the home's mode) that a task meets.
    """
    if shutil.which("bwrap") is None:
        pytest.skip("bubblewrap is not installed, so there is no sandbox to probe (apt install bubblewrap)")
    parent = Path(tempfile.mkdtemp(prefix="taskyard-security-", dir="/var/tmp"))
    parent.chmod(0o755)
    home = parent / "home"
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    config = write(parent, "taskyard.toml", SIZES)
    env = {"TASKYARD_CONFIG": str(config), "TASKYARD_KILL_GRACE": "1", "TASKYARD_MAX_WORKERS": "8"}
    server = Server(home, TASKYARD_SANDBOX="required", **env).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(parent, ignore_errors=True)


def run(
    client: Client,
    folder: Path,
    code: str,
    *,
    name: str = "attack.py",
    config: dict | None = None,
    keep: bool = False,
    **env: str,
) -> taskyard.Task:
    """Submit ``code`` (with the probe kit beside it) as a task of ``client``'s user, ``env`` in its environment."""
    write(folder, "probe.py", PROBE)
    write(folder, name, code)
    worker_config = taskyard.WorkerConfig(env_variables=env or None, **(config or {}))
    return taskyard.submit(
        name, files_path=folder, client=client, worker_config=worker_config, terminate_on_completion=not keep
    )


def result(task: taskyard.Task) -> dict:
    """What the task reported (its last ``RESULT`` line)."""
    logs = task.logs()
    lines = [line for line in logs.splitlines() if line.startswith("RESULT ")]
    assert lines, f"task {task.id} reported nothing; its log:\n{logs}"
    return json.loads(lines[-1].removeprefix("RESULT "))


def reported(task: taskyard.Task) -> dict:
    """What a task that goes on running (it holds) has reported so far."""
    wait_for(lambda: "RESULT " in task.logs(), timeout=30)
    return result(task)


def task_folder(server: Server, task: taskyard.Task) -> Path:
    """The task's folder on the host, in its worker's folder."""
    return server.home / "workers" / task.worker_name / "task"


def release(server: Server, task: taskyard.Task) -> None:
    """Let a holding task go on to its end (the test, as root, writes in the task's folder)."""
    write(task_folder(server, task), "release", "")


def processes_of(task_id: str) -> list[int]:
    """Host pids of the live processes started for this task: their environment names it (read as root)."""
    return [pid for pid in _pids() if (environ_of(pid) or {}).get("TASKYARD_TASK_ID") == task_id]


def task_process(task_id: str) -> int:
    """The host pid of the task's own process (not the bwrap processes around it)."""
    return wait_for(lambda: next((pid for pid in processes_of(task_id) if comm(pid) != "bwrap"), None))


def comm(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as source:
            return source.read().strip()
    except OSError:
        return ""


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as source:
            return source.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def host_uid(pid: int) -> int:
    """The real uid of process ``pid`` as this host (not the task's namespaces) sees it."""
    with open(f"/proc/{pid}/status") as status:
        return int(next(line for line in status if line.startswith("Uid:")).split()[1])


def _pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit() and int(entry) != os.getpid()]


@dataclass
class Neighbour:
    """Another user's task, running meanwhile: what a hostile task would go for."""

    task: taskyard.Task
    folder: Path  # its worker's folder on the host
    secret: Path  # a file it wrote in its task folder
    pid: int  # its process, as the host sees it


NEIGHBOUR = """
import time
from probe import report
with open("alice-secret.txt", "w") as out:
    out.write("alice's data")
report(up=True)
time.sleep(600)
"""


def start_neighbour(server: Server, client: Client, folder: Path) -> Neighbour:
    task = run(client, folder, NEIGHBOUR, name="neighbour.py")
    reported(task)
    secret = task_folder(server, task) / "alice-secret.txt"
    return Neighbour(task, server.home / "workers" / task.worker_name, secret, task_process(task.id))
