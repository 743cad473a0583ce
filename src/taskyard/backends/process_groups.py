"""The process groups of a worker on a machine the backend runs processes on (the local host, a Ray node).

The agent runs in a session of its own, and its task in a process group that the agent writes
to ``TASK_PGID_FILE`` in the worker's folder, so that a backend can stop both even when the
agent has died. Standard library only: it is loaded on Ray nodes too.
"""

from __future__ import annotations

import contextlib
import os
import signal
from pathlib import Path

TASK_PGID_FILE = "task.pgid"  # written by the agent: the process group of the task it runs


def signal_group(pgid: int, sig: signal.Signals) -> None:
    """Send ``sig`` to the process group; nothing if it is gone or not ours."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def task_group(folder: Path) -> int | None:
    """The process group of the task the worker in ``folder`` runs, as its agent wrote it; None if none."""
    try:
        return int((folder / TASK_PGID_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
