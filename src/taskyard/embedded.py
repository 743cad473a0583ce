"""The embedded control plane: found, started or restarted in the background on this machine.

It listens on 127.0.0.1 only, keeps its SQLite database and a generated admin token under
``TASKYARD_HOME`` and outlives the process that started it, so tasks outlive their clients.
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx

from taskyard import settings
from taskyard.errors import ServerUnavailable

START_TIMEOUT = 30.0
_started_here: list[dict] = []  # the state of each embedded server this process started


def state_path(home: Path | None = None) -> Path:
    return (home or settings.home()) / "server.json"


def token_path(home: Path | None = None) -> Path:
    return (home or settings.home()) / "token"


def read_token(home: Path) -> str:
    """The embedded server's admin token, made on first use (readable by this user only)."""
    path = token_path(home)
    if not path.exists():
        home.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("ty_" + secrets.token_urlsafe(32))
    return path.read_text().strip()


def saved_port(home: Path) -> int:
    """The port the embedded server used last, so that running agents find it again (0: none yet)."""
    try:
        return int((home / "port").read_text())
    except (OSError, ValueError):
        return 0


def status(home: Path | None = None) -> dict | None:
    """The running embedded server's ``{"url", "pid"}``, or None when none answers."""
    try:
        state = json.loads(state_path(home).read_text())
    except (OSError, ValueError):
        return None
    return state if _answers(state, home or settings.home()) else None


def _answers(state: dict, home: Path) -> bool:
    """Whether the server in ``state`` answers as that process (its pid is told only to a caller with a token)."""
    try:
        token = token_path(home).read_text().strip()
    except OSError:
        return False
    try:
        headers = {"Authorization": f"Bearer {token}"}
        response = httpx.get(state["url"] + "/api/v1/health", headers=headers, timeout=2.0)
        return response.status_code == 200 and response.json().get("pid") == state["pid"]
    except (httpx.HTTPError, ValueError, KeyError):
        return False


def ensure_running(home: Path | None = None) -> tuple[str, str]:
    """Return ``(url, token)`` of the embedded server, starting it if none answers."""
    home = home or settings.home()
    token = read_token(home)
    state = status(home)
    if state is None:
        with _lock(home):
            state = status(home)
            if state is None:
                state = _start(home)
                _started_here.append({**state, "home": str(home)})
    return state["url"], token


def started_here() -> dict | None:
    """``{"url", "pid", "home"}`` of the embedded server this process started, if it started one."""
    return _started_here[-1] if _started_here else None


@contextmanager
def _lock(home: Path):
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "server.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _start(home: Path) -> dict:
    state_path(home).unlink(missing_ok=True)
    log = home / "server.log"
    logged = log.stat().st_size if log.exists() else 0
    pid = _spawn_detached(home)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            raise ServerUnavailable(f"the embedded server failed to start{_reason(log, logged)}; see {log}")
        state = status(home)
        if state is not None:
            return state
        time.sleep(0.02)
    os.kill(pid, signal.SIGKILL)
    raise ServerUnavailable(f"the embedded server did not answer in {START_TIMEOUT:.0f} s; see {home / 'server.log'}")


def _reason(log: Path, offset: int) -> str:
    """``": <message>"`` from the last ``error: ...`` line the server wrote after ``offset``, or ``""``."""
    try:
        with open(log, "rb") as source:
            source.seek(offset)
            lines = source.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [line.removeprefix("error: ") for line in lines if line.startswith("error: ")]
    return f": {errors[-1]}" if errors else ""


def _spawn_detached(home: Path) -> int:
    """Start the server in a session of its own, so that it outlives this process."""
    env = {**os.environ, "TASKYARD_HOME": str(home)}
    argv = [sys.executable, "-m", "taskyard", "server", "--embedded"]
    log = os.open(home / "server.log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        actions = [
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, log, 1),
            (os.POSIX_SPAWN_DUP2, log, 2),
        ]
        return os.posix_spawn(sys.executable, argv, env, file_actions=actions, setsid=True)
    finally:
        os.close(log)


def stop(home: Path | None = None, timeout: float = 15.0) -> bool:
    """Stop the embedded server; True if one was running. Running workers are left to finish."""
    state = status(home)
    if state is None:
        return False
    os.kill(state["pid"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(state["pid"]):
        time.sleep(0.05)
    return True


def _alive(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG) != (0, 0):
            return False  # it was our child (we started it) and has exited
    except ChildProcessError:
        pass  # not our child: ask the kernel instead
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
