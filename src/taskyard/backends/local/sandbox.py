"""Whether, and how, local workers' tasks run in a bubblewrap sandbox (``TASKYARD_SANDBOX``).

The agent stays outside the sandbox (it holds the worker's token) and starts each of its task's
commands inside one, built by ``taskyard.agent.sandbox``. This side decides, once per backend,
whether bwrap is there and works, which folders the sandbox hides, and which user a task runs as
when the control plane runs as root: a user of each worker's own, never root.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("taskyard.sandbox")

MODES = ("auto", "required", "off")
UID_BASE = 1_700_000_000  # workers' own users, when the control plane runs as root
UID_SPAN = 100_000_000
INSTALL_HINT = "install bubblewrap (apt install bubblewrap, dnf install bubblewrap)"


@dataclass(frozen=True)
class SandboxPolicy:
    mode: str
    bwrap: str | None  # the working bwrap, or None: tasks run unsandboxed (auto) or not at all (required)
    setpriv: str | None  # what drops a task to its worker's user, when we are root
    problem: str | None  # why there is no sandbox, when there is none
    hidden: tuple[str, ...]  # folders the task must not see (the control plane's home, its user's home)
    kept: tuple[str, ...] = ()  # folders of this Python and taskyard, shown read-only even inside hidden ones

    def check(self) -> None:
        """Raise if workers may not start: the sandbox is required and cannot be had."""
        if self.bwrap is None and self.mode == "required":
            raise RuntimeError(f"TASKYARD_SANDBOX=required, but {self.problem}")

    def agent_settings(self, worker_name: str) -> dict:
        """What the agent needs to start its task's commands sandboxed (nothing when not)."""
        if self.bwrap is None:
            return {}
        uid = worker_uid(worker_name)
        return {"bwrap": self.bwrap, "setpriv": self.setpriv, "hide": list(self.hidden), "keep": list(self.kept),
                "uid": uid}


def worker_uid(worker_name: str) -> int | None:
    """The user a worker's task runs as: its own when we are root; None (ours) otherwise."""
    if os.geteuid() != 0:
        return None
    return UID_BASE + zlib.crc32(worker_name.encode()) % UID_SPAN


def make_policy(mode: str, hidden: tuple[Path, ...]) -> SandboxPolicy:
    if mode not in MODES:
        raise ValueError(f"sandbox must be one of {', '.join(MODES)}, not {mode!r}")
    folders = tuple(str(folder.resolve()) for folder in hidden)
    if mode == "off":
        return SandboxPolicy(mode, None, None, "the sandbox is off (TASKYARD_SANDBOX=off)", folders)
    bwrap, setpriv, problem = _working_bwrap()
    if bwrap is None and mode == "auto":
        log.warning("workers are NOT sandboxed: %s; tasks can reach this control plane's files. %s,"
                    " or set TASKYARD_SANDBOX=required to refuse unsandboxed workers", problem, INSTALL_HINT)
    return SandboxPolicy(mode, bwrap, setpriv, problem, folders, tuple(_interpreter_folders()))


def _working_bwrap() -> tuple[str | None, str | None, str | None]:
    """bwrap's path (and setpriv's, as root) if they make a sandbox here as a worker would, else why not."""
    bwrap, setpriv = shutil.which("bwrap"), shutil.which("setpriv")
    if bwrap is None:
        return None, None, f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}"
    uid = worker_uid("probe")
    if uid is not None and setpriv is None:
        return None, None, "setpriv (util-linux) is not installed; as root, tasks need it to run as a user of their own"
    from taskyard.agent.isolation import Isolation

    isolation = Isolation({"sandbox": {"bwrap": bwrap, "setpriv": setpriv, "uid": uid}})
    command, _ = isolation.command(["true"], cwd=Path("/"), writable=[], network=False)
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=10, cwd="/")
    except (OSError, subprocess.SubprocessError) as exc:
        return None, None, f"bwrap cannot run: {exc}"
    if done.returncode != 0:
        return None, None, f"bwrap cannot make a sandbox here: {done.stderr.strip() or done.returncode}"
    return bwrap, setpriv, None


def _interpreter_folders() -> list[str]:
    """Folders that hold this Python and taskyard: shown read-only even inside a hidden folder."""
    folders = {sys.prefix, sys.base_prefix, sys.exec_prefix, str(Path(__file__).resolve().parents[3])}
    folders.add(str(Path(sys.executable).resolve().parent.parent))
    return sorted(folders)
