"""Every process a task started, whatever it did with sessions or process groups.

Where the worker has a cgroup of its own, its members are those processes (and the agent). Else
the agent makes itself a child subreaper: a process orphaned anywhere below it is reparented to
the agent, not to init, so walking ``/proc`` down from the agent finds all of them. Inside a
sandbox the same holds through its PID namespace, whose init is a child of bwrap.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import time

PR_SET_CHILD_SUBREAPER = 36


def become_subreaper() -> bool:
    """Adopt orphans of our descendants; False where the OS has no such thing."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def ends_within(process: subprocess.Popen, seconds: float) -> bool:
    """Whether ``process`` (not yet reaped) ends within ``seconds``, known the moment it does.

    Through a pidfd where the OS has them: ``Popen.wait`` with a timeout polls in sleeps that double
    from 1 ms, so a task that ended just after one of them waited out the next (16 ms for one that
    ends after 15 ms, as a hello task does)."""
    try:
        pidfd = os.pidfd_open(process.pid)
    except (AttributeError, OSError):  # not Linux (or before 5.3): Popen's own polling
        try:
            process.wait(seconds)
        except subprocess.TimeoutExpired:
            return False
        return True
    try:
        readable, _, _ = select.select([pidfd], [], [], seconds)
    finally:
        os.close(pidfd)
    return bool(readable)


def descendants(root: int) -> list[int]:
    """The processes below ``root``, parents before their children."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _parents():
        children.setdefault(ppid, []).append(pid)
    found, queue = [], list(children.get(root, ()))
    while queue:
        pid = queue.pop(0)
        found.append(pid)
        queue.extend(children.get(pid, ()))
    return found


def ours(cgroup: str | None = None) -> list[int]:
    """The processes this agent started, and theirs: the other members of its ``cgroup``, or its descendants."""
    if cgroup is not None:
        try:
            with open(os.path.join(cgroup, "cgroup.procs")) as procs:
                return [pid for pid in map(int, procs.read().split()) if pid != os.getpid()]
        except OSError:
            pass
    return descendants(os.getpid())


def signal_all(sig: int, *, spare_bwrap: bool = False, cgroup: str | None = None) -> None:
    """Send ``sig`` to every process of ours (but bwrap itself, with ``spare_bwrap``).

    bwrap is spared a SIGTERM because it dies of one and takes its whole sandbox with it at once:
    the task is to get its grace period first.
    """
    for pid in ours(cgroup):
        if spare_bwrap and _name(pid) == "bwrap":
            continue
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def kill_all_and_reap(cgroup: str | None = None) -> None:
    """SIGKILL every process of ours, then reap the ones that were our children (adopted orphans too)."""
    for _ in range(50):
        if not ours(cgroup):
            break
        signal_all(signal.SIGKILL, cgroup=cgroup)
        _reap()
        time.sleep(0.002)
    _reap()


def _reap() -> None:
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass


def _parents() -> list[tuple[int, int]]:
    pairs = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                pairs.append((int(entry), int(stat.read().rsplit(b")", 1)[1].split()[1])))
        except (OSError, IndexError, ValueError):
            continue
    return pairs


def _name(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as comm:
            return comm.read().strip()
    except OSError:
        return ""
