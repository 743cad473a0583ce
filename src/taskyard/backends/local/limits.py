"""Limits on a whole local worker (its agent, its task and every process they start).

A worker gets what its size says through cgroups: v2 where this process's cgroup delegates the
memory, cpu and pids controllers, else the v1 controllers of those names, each in a cgroup of
the worker's own under this process's. The agent joins them as it starts, so everything it starts
is inside. Where neither can be written (no cgroups, not allowed), rlimits are the last resort:
the task's address space and, when it runs under a user of its own, its process count; a CPU
quota then cannot be had. :class:`Limits` says which, and the worker's info shows it.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from taskyard.backends.base import Resources

PIDS_PER_WORKER = 2048  # processes and threads a worker may have at once
CPU_PERIOD = 100_000  # microseconds
CONTROLLERS = ("memory", "cpu", "pids")


@dataclass(frozen=True)
class Limits:
    """What was set for one worker: ``kind`` is "cgroup v2", "cgroup v1", "rlimit" or "none"."""

    kind: str
    cgroups: tuple[str, ...] = ()  # the folders the agent joins (one per v1 controller, one for v2)
    memory_cgroup: str | None = None  # where the agent reads out-of-memory kills
    rlimits: dict[str, int] = field(default_factory=dict)  # for the task, when there is no cgroup

    def to_json(self) -> dict:
        return {"kind": self.kind, "cgroups": list(self.cgroups), "memory_cgroup": self.memory_cgroup,
                "rlimits": self.rlimits}


class Cgroups:
    """The cgroup folders under which this control plane makes one cgroup per worker."""

    def __init__(self, version: int, bases: dict[str, Path]) -> None:
        self.version = version
        self.bases = bases  # controller -> folder ("" for v2's single tree)

    @property
    def kind(self) -> str:
        return f"cgroup v{self.version}"

    def create(self, name: str, resources: Resources) -> Limits:
        """Make the worker's cgroups with its limits; on any failure remove what was made and raise."""
        made: list[Path] = []
        try:
            for controller, base in self.bases.items():
                folder = base / name
                folder.mkdir()
                made.append(folder)
                _write_limits(self.version, controller, folder, resources)
        except OSError:
            remove([str(folder) for folder in made])
            raise
        memory = made[0] if self.version == 2 else self.bases["memory"] / name
        return Limits(self.kind, tuple(str(folder) for folder in made), str(memory))


def find_cgroups(tag: str) -> Cgroups | None:
    """Cgroups this process may make children in, under a folder named ``tag``; None if none can."""
    for version, finder in ((2, _v2_bases), (1, _v1_bases)):
        bases = finder(tag)
        if bases and _writable(bases):
            return Cgroups(version, bases)
    return None


def rlimits_for(resources: Resources, *, own_user: bool) -> Limits:
    limits = {"as": resources.memory}
    if own_user:  # RLIMIT_NPROC counts every process of the user: only a user of its own makes it per worker
        limits["nproc"] = PIDS_PER_WORKER
    return Limits("rlimit", rlimits=limits)


def remove(cgroups: list[str] | tuple[str, ...], timeout: float = 5.0) -> None:
    """Kill every process left in the worker's cgroups, then remove them. Safe to call twice."""
    deadline = time.monotonic() + timeout
    for folder in map(Path, cgroups):
        while folder.exists() and time.monotonic() < deadline:
            if not _kill_members(folder):
                with contextlib.suppress(OSError):
                    folder.rmdir()
                    break
            time.sleep(0.01)


def _kill_members(folder: Path) -> bool:
    """SIGKILL every process in the cgroup; True if there were any."""
    try:
        pids = [int(pid) for pid in (folder / "cgroup.procs").read_text().split()]
    except OSError:
        return False
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
    return bool(pids)


def _write_limits(version: int, controller: str, folder: Path, resources: Resources) -> None:
    quota = max(1000, int(resources.cpu * CPU_PERIOD))
    if version == 2:
        _put(folder, "memory.max", resources.memory)
        with contextlib.suppress(OSError):
            _put(folder, "memory.swap.max", 0)
        _put(folder, "cpu.max", f"{quota} {CPU_PERIOD}")
        _put(folder, "pids.max", PIDS_PER_WORKER)
    elif controller == "memory":
        _put(folder, "memory.limit_in_bytes", resources.memory)
        if (folder / "memory.memsw.limit_in_bytes").exists():  # no swapping past the limit either
            _put(folder, "memory.memsw.limit_in_bytes", resources.memory)
    elif controller == "cpu":
        _put(folder, "cpu.cfs_period_us", CPU_PERIOD)
        _put(folder, "cpu.cfs_quota_us", quota)
    else:
        _put(folder, "pids.max", PIDS_PER_WORKER)


def _put(folder: Path, name: str, value: object) -> None:
    (folder / name).write_text(f"{value}\n")


def _writable(bases: dict[str, Path]) -> bool:
    """Can we make (and remove) a cgroup in each base? Makes the bases as needed."""
    try:
        for base in bases.values():
            base.mkdir(exist_ok=True)
            probe = base / f"probe-{os.getpid()}"
            probe.mkdir()
            probe.rmdir()
    except OSError:
        return False
    return True


def _v2_bases(tag: str) -> dict[str, Path]:
    mount, own = _mount("cgroup2", None), _own_path("")
    if mount is None or own is None:
        return {}
    parent = mount / own.lstrip("/")
    try:
        enabled = (parent / "cgroup.subtree_control").read_text().split()
    except OSError:
        return {}
    if not set(CONTROLLERS) <= set(enabled):
        return {}
    base = parent / tag
    with contextlib.suppress(OSError):
        base.mkdir(exist_ok=True)
        _put(base, "cgroup.subtree_control", " ".join(f"+{c}" for c in CONTROLLERS))
    return {"": base}


def _v1_bases(tag: str) -> dict[str, Path]:
    bases = {}
    for controller in CONTROLLERS:
        mount, own = _mount("cgroup", controller), _own_path(controller)
        if mount is None or own is None:
            return {}
        bases[controller] = mount / own.lstrip("/") / tag
    return bases


def _mount(fstype: str, controller: str | None) -> Path | None:
    """Where a cgroup hierarchy is mounted: v2's, or the v1 one holding ``controller``."""
    with contextlib.suppress(OSError), open("/proc/self/mountinfo") as mounts:
        for line in mounts:
            before, _, after = line.partition(" - ")
            kind, _source, options = (after.split() + ["", "", ""])[:3]
            if kind == fstype and (controller is None or controller in options.split(",")):
                return Path(before.split()[4])
    return None


def _own_path(controller: str) -> str | None:
    """This process's cgroup path for ``controller`` ("" for v2)."""
    with contextlib.suppress(OSError), open("/proc/self/cgroup") as lines:
        for line in lines:
            _, names, path = line.rstrip("\n").split(":", 2)
            if (controller == "" and names == "") or (controller and controller in names.split(",")):
                return path
    return None


class Cores:
    """The cores each worker is pinned to: as many as its size's cpu, rounded up, the least used first.

    So a task sees its size in ``nproc`` and ``os.sched_getaffinity``; the CPU quota is what holds
    it to a fraction of a core. Kept in memory: after a restart, earlier workers are not counted.

    Between cores as used, the one taken last goes first. A worker starts most often to replace a warm
    one that was just given a task (the warm worker up longest is given the next task): the cores of
    the newest workers are the ones whose workers are still idle, and a new worker's start there does
    not slow the task that has just begun.
    """

    def __init__(self) -> None:
        self._held: dict[str, tuple[int, ...]] = {}  # in the order taken
        self._lock = threading.Lock()

    def take(self, worker_name: str, cpu: float) -> tuple[int, ...]:
        cores = sorted(os.sched_getaffinity(0))
        wanted = min(len(cores), max(1, math.ceil(cpu - 1e-9)))
        with self._lock:
            use = Counter(core for held in self._held.values() for core in held)
            last = {core: order for order, held in enumerate(self._held.values()) for core in held}
            ranked = sorted(cores, key=lambda core: (use[core], -last.get(core, -1), core))
            picked = self._held[worker_name] = tuple(sorted(ranked[:wanted]))
        return picked

    def release(self, worker_name: str) -> None:
        with self._lock:
            self._held.pop(worker_name, None)
