"""Small helpers for tests."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from taskyard import embedded
from taskyard.client import Client

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
    """SIGKILL every process whose TASKYARD_WORKER_DIR lies in ``folder`` (agents and their tasks)."""
    marker = f"TASKYARD_WORKER_DIR={folder}/".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if any(item.startswith(marker) for item in environ.split(b"\0")):
            with contextlib.suppress(OSError):
                os.kill(int(entry.name), signal.SIGKILL)
