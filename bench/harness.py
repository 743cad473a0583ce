"""What every measurement shares: a control plane of its own, bounded waits, cleanup."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from taskyard import embedded
from taskyard.client import Client
from taskyard.models import TaskInfo, WorkerInfo
from taskyard.status import TaskStatus, WorkerStatus

from .figures import BenchError

T = TypeVar("T")

REPO = Path(__file__).resolve().parent.parent
EXAMPLES = REPO / "examples"
HELLO = "task_1.py"
HELLO_TEXT = "Hello from simple task 1"
LIVE_WORKER = (WorkerStatus.PROVISIONING, WorkerStatus.RUNNING, WorkerStatus.TERMINATING)


def progress(text: str) -> None:
    print(f"[bench] {text}", file=sys.stderr, flush=True)


# -- bounded waiting ----------------------------------------------------------------------------------


def call_with_timeout(fn: Callable[[], T], timeout: float, what: str) -> T:
    """Run ``fn`` in a daemon thread; raise BenchError if it has not returned in ``timeout`` seconds.

    A call left hanging is cut loose when its control plane is stopped (its requests then fail).
    """
    box: dict = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"bench-{what}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise BenchError(f"{what} did not finish in {timeout:.0f} s")
    if "error" in box:
        raise box["error"]
    return box["value"]


def wait_terminal(client: Client, task_id: str, timeout: float = 60.0) -> TaskInfo:
    """Long-poll until the task has ended; raise BenchError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"task {task_id} did not end in {timeout:.0f} s")
        info = client.wait(task_id, timeout=min(left, 30.0))
        if info.status.is_terminal():
            return info


def wait_running(client: Client, task_id: str, timeout: float = 60.0) -> None:
    """Poll until the task is In Progress; raise BenchError if it ends first or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = client.task(task_id)
        if info.status is TaskStatus.IN_PROGRESS:
            return
        if info.status.is_terminal():
            raise BenchError(f"task {task_id} ended {info.alias} before it ran: {info.reason}")
        time.sleep(0.05)
    raise BenchError(f"task {task_id} did not start in {timeout:.0f} s")


def expect_status(info: TaskInfo, wanted: TaskStatus) -> None:
    if info.status is not wanted:
        raise BenchError(f"task {info.id} ended {info.alias}, not {wanted.alias}: {info.reason or ''}")


def settle(client: Client, warm: int, timeout: float = 15.0) -> None:
    """Wait (untimed, bounded) until no task's worker is live and ``warm`` idle warm workers are up.

    Each timed run then starts from the same state: the previous run's worker gone, the pool refilled.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        workers = client.workers()
        if not any(_busy(w) for w in workers) and _idle_warm(workers) >= warm:
            return
        time.sleep(0.02)
    progress(f"the pool did not settle in {timeout:.0f} s; going on")


def _busy(worker: WorkerInfo) -> bool:
    return worker.user is not None and worker.status in LIVE_WORKER


def _idle_warm(workers: list[WorkerInfo]) -> int:
    return sum(1 for w in workers if w.user is None and w.status is WorkerStatus.RUNNING)


def expected_warm(env: dict[str, str]) -> int:
    """How many idle warm workers a server started with ``env`` keeps up when nothing runs."""
    warm = int(env.get("TASKYARD_WARM_WORKERS", "2"))
    return min(warm, int(env.get("TASKYARD_MAX_WORKERS", str(os.cpu_count() or 1))))


# -- a control plane of its own ----------------------------------------------------------------------


class Server:
    """An embedded control plane in a temporary ``TASKYARD_HOME``, started with exactly ``env``.

    Other ``TASKYARD_*`` variables of this process are hidden from it, so it runs on defaults.
    ``stop`` also ends every worker process it started (those still running a task outlive it).
    """

    def __init__(self, label: str, **env: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix=f"taskyard-bench-{label}-"))
        self.env = {"TASKYARD_HOME": str(self.home), **env}
        self.url = self.token = ""
        self.pid = 0
        self.start_seconds = 0.0
        self._clients: list[Client] = []

    def start(self) -> Server:
        with _environment(self.env):
            began = time.perf_counter()
            self.url, self.token = embedded.ensure_running(self.home)
            self.start_seconds = time.perf_counter() - began
        state = embedded.status(self.home)
        if state is None:
            raise BenchError(f"the control plane in {self.home} stopped answering right after it started")
        self.pid = state["pid"]
        return self

    def client(self) -> Client:
        client = Client(self.url, self.token)
        self._clients.append(client)
        return client

    def rss_mb(self) -> float:
        return rss_mb(self.pid)

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()
        try:
            embedded.stop(self.home, timeout=15)
        finally:
            _kill(self.pid)
            _end_workers(self.home)
            shutil.rmtree(self.home, ignore_errors=True)


@contextmanager
def running(label: str, **env: str) -> Iterator[Server]:
    """A started control plane, stopped (with its workers) however the block ends."""
    server = Server(label, **env)
    try:
        yield server.start()
    finally:
        server.stop()


@contextmanager
def _environment(env: dict[str, str]) -> Iterator[None]:
    saved = {k: v for k, v in os.environ.items() if k.startswith("TASKYARD_") or k in env}
    for key in saved:
        del os.environ[key]
    os.environ.update(env)
    try:
        yield
    finally:
        for key in env:
            os.environ.pop(key, None)
        os.environ.update(saved)


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` in MB (VmRSS from /proc)."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise BenchError(f"no VmRSS for pid {pid}")


def _kill(pid: int) -> None:
    """SIGKILL the control plane we started if it is somehow still there (it is our child)."""
    if not pid:
        return
    try:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return
    except ChildProcessError:
        return  # not ours, or already reaped
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _end_workers(home: Path) -> None:
    """SIGKILL the agents and tasks this control plane started: those of worker folders under ``home``.

    A task has ``TASKYARD_WORKER_DIR`` in its environment. An agent runs in its worker's folder; it
    is forked from the local backend's zygote, so ``/proc`` shows the zygote's environment for it.
    """
    marker = f"TASKYARD_WORKER_DIR={home}/".encode()
    for pid in _pids():
        try:
            with open(f"/proc/{pid}/environ", "rb") as environ:
                entries = environ.read().split(b"\0")
            cwd = os.readlink(f"/proc/{pid}/cwd")
        except OSError:
            continue
        if any(entry.startswith(marker) for entry in entries) or cwd.startswith(f"{home}/"):
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _pids() -> list[int]:
    return [int(name) for name in os.listdir("/proc") if name.isdigit() and int(name) != os.getpid()]


@contextmanager
def task_folder(files: dict[str, str]) -> Iterator[Path]:
    """A temporary folder holding the given task files, removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="taskyard-bench-task-"))
    try:
        for name, text in files.items():
            (folder / name).write_text(text)
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    began = time.perf_counter()
    value = fn()
    return time.perf_counter() - began, value


def warm_runs(
    label: str, what: str, warmup: int, runs: int, run: Callable[[Client], float], timeout: float, **env: str
) -> list[float]:
    """``run(client)`` on a control plane of its own, each time from the same state (no task running,
    the warm pool refilled), ``warmup`` untimed times first: the seconds of the other ``runs``."""
    samples = []
    with running(label, **env) as server:
        client = server.client()
        warm = expected_warm(server.env)
        for index in range(warmup + runs):
            settle(client, warm)
            seconds = call_with_timeout(lambda: run(client), timeout, f"{what} run")
            if index >= warmup:
                samples.append(seconds)
        progress(f"{what}: {len(samples)} runs")
    return samples
