"""A ``taskyard server`` run in the foreground, as a team would run it, in a home folder of its own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from taskyard.client import Client

from support import _kill_processes_under, wait_for


class Foreground:
    """``python -m taskyard server --port 0 --home HOME [args]``; ``token`` is the one it printed, if any."""

    def __init__(self, home: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.home = home
        self.args = args
        self.env = {**os.environ, "TASKYARD_HEARTBEAT_TIMEOUT": "3", **(env or {})}
        self.env.pop("TASKYARD_URL", None)
        self.env.pop("TASKYARD_TOKEN", None)
        self.process: subprocess.Popen | None = None
        self.url = ""
        self.token: str | None = None
        self.lines: list[str] = []
        self._clients: list[Client] = []

    def start(self, timeout: float = 30) -> Foreground:
        argv = [sys.executable, "-m", "taskyard", "server", "--port", "0", "--home", str(self.home), *self.args]
        self.process = subprocess.Popen(argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                self.process.wait(timeout=10)
                self.process.stdout.close()
                raise RuntimeError("the server exited: " + "".join(self.lines))
            self.lines.append(line)
            if found := re.search(r"(ty_[A-Za-z0-9_-]{20,})", line):
                self.token = found.group(1)
            if found := re.search(r"listening on (http://\S+)", line):
                self.url = found.group(1)
                wait_for(self._answers, timeout=deadline - time.monotonic())
                return self
        raise RuntimeError("the server did not start: " + "".join(self.lines))

    def _answers(self) -> bool:
        try:
            return httpx.get(self.url + "/api/v1/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def exit_status(self, timeout: float = 30) -> tuple[int, str]:
        """For a server expected to refuse to start: its exit code and what it printed."""
        assert self.process is not None
        out, _ = self.process.communicate(timeout=timeout)
        return self.process.returncode, "".join(self.lines) + out

    def client(self, token: str | None = None) -> Client:
        """A client with ``token`` (default: the admin's it printed), closed when the server stops."""
        client = Client(self.url, token or self.token or "")
        self._clients.append(client)
        return client

    def stop(self, sig: int = signal.SIGTERM) -> None:
        for client in self._clients:
            client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(timeout=20)
        if self.process is not None and self.process.stdout:
            self.process.stdout.close()
        _kill_processes_under(self.home / "workers")
