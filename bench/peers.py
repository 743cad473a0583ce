"""Control planes that are peers: ``taskyard server`` processes on one PostgreSQL database and one home folder.

This is the high-availability setup of the README: the servers share the queue, the workers and
the stored task folders. Each runs in the foreground, as a team would run it, with the same admin
token; other ``TASKYARD_*`` variables of this process are hidden from them.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from taskyard.client import Client

from .figures import BenchError
from .harness import _end_workers, call_with_timeout

START_TIMEOUT = 60.0


class Peers:
    def __init__(self, label: str, db_url: str, count: int, **env: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix=f"taskyard-bench-{label}-"))
        self.token = secrets.token_hex(16)
        self.env = {"TASKYARD_ADMIN_TOKEN": self.token, **env}
        self.db_url = db_url
        self.count = count
        self.processes: list[subprocess.Popen] = []
        self.urls: list[str] = []
        self.logs: list[Path] = []
        self._clients: list[Client] = []

    def start(self) -> Peers:
        """Start them one after the other (the first one makes the schema and the vault key)."""
        for _ in range(self.count):
            self.urls.append(call_with_timeout(self._start_one, START_TIMEOUT, "a peer server's start"))
        return self

    def _start_one(self) -> str:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_")}
        argv = [sys.executable, "-m", "taskyard", "server", "--port", "0", "--home", str(self.home),
                "--db-url", self.db_url]  # fmt: skip
        log = self.home.parent / f"{self.home.name}-server{len(self.processes)}.log"  # outside the shared home
        with open(log, "w") as out:  # a file, not a pipe: a server that logs much never waits on us
            process = subprocess.Popen(argv, env={**environ, **self.env}, stdout=out, stderr=subprocess.STDOUT)
        self.processes.append(process)
        self.logs.append(log)
        while process.poll() is None:
            if found := re.search(r"listening on (http://\S+)", log.read_text()):
                return found.group(1)
            time.sleep(0.05)
        raise BenchError(f"a peer server exited (code {process.returncode}) before it listened: {log.read_text()}")

    def clients(self) -> list[Client]:
        """One client for each server, as its admin."""
        made = [Client(url, self.token) for url in self.urls]
        self._clients += made
        return made

    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def stop(self) -> None:
        for client in self._clients:
            client.close()
        for process in self.processes:
            with suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes:
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        _end_workers(self.home)
        shutil.rmtree(self.home, ignore_errors=True)
        for log in self.logs:
            log.unlink(missing_ok=True)


@contextmanager
def peers_running(label: str, db_url: str, count: int = 2, **env: str) -> Iterator[Peers]:
    """``count`` started peer servers, stopped (with their workers) however the block ends."""
    peers = Peers(label, db_url, count, **env)
    try:
        yield peers.start()
    finally:
        peers.stop()
