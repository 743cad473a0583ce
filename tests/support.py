"""Small helpers for tests."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from taskyard import embedded
from taskyard.client import Client, reset_default_client

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def wait_for(predicate, timeout: float = 20.0):
    """Poll ``predicate`` until it returns something true; fail the test after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


class Server:
    """A control plane in its own process and home folder, started through the embedded path."""

    def __init__(self, home: Path, db_url: str | None = None, **env: str) -> None:
        self.home = home
        self.env = {"TASKYARD_HOME": str(home), "TASKYARD_HEARTBEAT_TIMEOUT": "3", **env}
        if db_url:
            self.env["TASKYARD_DB_URL"] = db_url
        self.url = self.token = ""
        self.pid = 0
        self.client: Client | None = None
        self._extra_clients: list[Client] = []

    def start(self) -> Server:
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)
        try:
            self.url, self.token = embedded.ensure_running(self.home)
        finally:
            for key, value in saved.items():
                os.environ.pop(key) if value is None else os.environ.__setitem__(key, value)
        self.pid = embedded.status(self.home)["pid"]
        self.client = Client(self.url, self.token)
        return self

    def stop(self) -> None:
        """Stop the control plane, then every worker process it left running (tests only)."""
        embedded.stop(self.home)
        self._close()
        _kill_processes_under(self.home / "workers")

    def kill9(self) -> None:
        """Kill the control plane without warning (its workers go on)."""
        os.kill(self.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while embedded.status(self.home) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        self._close()

    def _close(self) -> None:
        for client in [self.client, *self._extra_clients]:
            if client is not None:
                client.close()
        self.client, self._extra_clients = None, []

    def user_client(self, name: str) -> Client:
        """A client for a new (non-admin) user called ``name``."""
        client = Client(self.url, self.client.add_user(name).token)
        self._extra_clients.append(client)
        return client


def _kill_processes_under(folder: Path) -> None:
    """SIGKILL every process started for a worker in ``folder`` (agents and their tasks)."""
    for pid in processes_in(folder):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


def processes_in(folder: Path) -> list[int]:
    """Processes on this host started for the worker(s) in ``folder``: agents, tasks and what those forked.

    An agent runs in its worker's folder. It is forked from the local backend's zygote, so the
    environment ``/proc`` shows for it is the zygote's; but it starts its task with
    ``TASKYARD_WORKER_DIR`` set, and the task's children inherit that. A zombie's environment can
    no longer be read, and it holds nothing but its pid.
    """
    found = []
    for entry in os.listdir("/proc"):
        pid = int(entry) if entry.isdigit() else None
        if pid is None or pid == os.getpid():
            continue
        env = environ_of(pid) or {}
        places = (env.get("TASKYARD_WORKER_DIR"), cwd_of(pid))
        if any(place is not None and _within(Path(place), folder) for place in places):
            found.append(pid)
    return found


def seen_from_here(folder: Path, pids: dict[str, int]) -> dict[str, int]:
    """Host pids of processes that a task of the worker in ``folder`` reported with its own pids.

    A sandboxed task has a PID namespace of its own: each of its processes is found by its id in
    there (the last of ``NSpid``). Unsandboxed, the ids are the same.
    """
    here = {}
    for pid in processes_in(folder):
        inner = namespace_pids(pid)
        if len(inner) > 1:
            here[inner[-1]] = pid
    return {label: here.get(pid, pid) for label, pid in pids.items()}


def namespace_pids(pid: int) -> list[int]:
    """Process ``pid``'s ids in this PID namespace and each one below it, innermost last."""
    try:
        with open(f"/proc/{pid}/status") as status:
            line = next(line for line in status if line.startswith("NSpid:"))
    except (OSError, StopIteration):
        return []
    return [int(part) for part in line.split()[1:]]


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def cwd_of(pid: int) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/cwd").removesuffix(" (deleted)")
    except OSError:
        return None


def environ_of(pid: int) -> dict[str, str] | None:
    """The environment process ``pid`` was started with; None if it is gone or not ours to read.

    A process is briefly without one while it execs (``Popen`` may return by then), so an empty
    answer from a process that is neither a zombie nor a kernel thread is asked again.
    """
    deadline = time.monotonic() + 2
    while True:
        try:
            with open(f"/proc/{pid}/environ", "rb") as source:
                raw = source.read()
        except OSError:
            return None
        if raw or not _execing(pid) or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    pairs = (entry.decode(errors="replace").partition("=") for entry in raw.split(b"\0") if entry)
    return {key: value for key, _, value in pairs}


def _execing(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    kernel_thread = int(fields[6]) & 0x00200000  # PF_KTHREAD in field 9, flags
    return fields[0] != "Z" and not kernel_thread


@contextlib.contextmanager
def default_client_of(server: Server, monkeypatch):
    """Point the SDK's and CLI's default client (TASKYARD_URL / TASKYARD_TOKEN) at ``server``, as its admin."""
    monkeypatch.setenv("TASKYARD_URL", server.url)
    monkeypatch.setenv("TASKYARD_TOKEN", server.token)
    reset_default_client()
    try:
        yield server
    finally:
        reset_default_client()


def invoke(cli, *args: object):
    """Run ``taskyard ARGS...`` with ``cli`` (a CliRunner); its Result."""
    from taskyard.cli import app

    return cli.invoke(app, [str(arg) for arg in args])
