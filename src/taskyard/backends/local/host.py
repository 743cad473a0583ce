"""What this host holds: cores, memory and GPUs, as the local backend's workers may use them.

Limits of the cgroup this process runs in (a container's, a systemd slice's) count: the host
holds the smaller of what the machine has and what the cgroup allows. Whatever cannot be read
is left out silently; the machine's own figures stand.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path, PurePosixPath

from taskyard.backends.base import Resources

PROC_CGROUP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")
UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a huge number (about 2**63)
_GPU_LINE = re.compile(r"GPU (\d+):")


def host_capacity(gpus: tuple[str, ...] | None = None) -> Resources:
    """This host's cores, memory and GPUs; ``gpus`` overrides the GPUs found (``TASKYARD_GPUS``)."""
    found = detect_gpus() if gpus is None else tuple(gpus)
    return Resources(cpu=cpu_count(), memory=memory_bytes(), gpus=found)


def detect_gpus() -> tuple[str, ...]:
    """The device indexes ``nvidia-smi -L`` lists (``GPU 0: ...``); none without it, or if it fails."""
    command = shutil.which("nvidia-smi")
    if command is None:
        return ()
    try:
        listing = subprocess.run([command, "-L"], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return ()
    return tuple(match.group(1) for line in listing.splitlines() if (match := _GPU_LINE.match(line.strip())))


def cpu_count(proc: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> float:
    """Cores this process may run on, or its cgroup's CPU quota (in cores) if that is smaller."""
    try:
        cores = float(len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        cores = float(os.cpu_count() or 1)
    quota = cgroup_cpu_limit(proc, root)
    return cores if quota is None else min(cores, quota)


def memory_bytes(proc: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> int:
    """Physical memory, or this process's cgroup memory limit if that is smaller."""
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    limit = cgroup_memory_limit(proc, root)
    return physical if limit is None else min(physical, limit)


def cgroup_memory_limit(proc: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> int | None:
    """The smallest memory limit on the way from this process's cgroup up to the root (v2 or v1)."""
    limits = []
    for folder, v2 in _cgroup_folders("memory", proc, root):
        limit = _read_int(folder / ("memory.max" if v2 else "memory.limit_in_bytes"))
        if limit is not None and 0 < limit < UNLIMITED:
            limits.append(limit)
    return min(limits, default=None)


def cgroup_cpu_limit(proc: Path = PROC_CGROUP, root: Path = CGROUP_ROOT) -> float | None:
    """The smallest CPU quota, in cores, from this process's cgroup up to the root (v2 or v1)."""
    quotas = [quota for folder, v2 in _cgroup_folders("cpu", proc, root) if (quota := _cpu_quota(folder, v2))]
    return min(quotas, default=None)


def _cpu_quota(folder: Path, v2: bool) -> float | None:
    if v2:
        try:
            limit, every = (folder / "cpu.max").read_text().split()[:2]
            return int(limit) / int(every) if limit != "max" and int(every) > 0 else None
        except (OSError, ValueError):
            return None
    quota, period = _read_int(folder / "cpu.cfs_quota_us"), _read_int(folder / "cpu.cfs_period_us")
    return quota / period if quota is not None and period and quota > 0 else None


def _cgroup_folders(controller: str, proc: Path, root: Path) -> list[tuple[Path, bool]]:
    """``(folder, is v2)`` for each cgroup from this process's up to its hierarchy's root."""
    try:
        lines = proc.read_text().splitlines()
    except OSError:
        return []
    folders = []
    for line in lines:
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            base, v2 = root, True
        elif controller in controllers.split(","):
            base, v2 = root / controllers, False
        else:
            continue
        cgroup = PurePosixPath(path or "/")
        folders += [(base / str(part).lstrip("/"), v2) for part in (cgroup, *cgroup.parents)]
    return folders


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):  # missing, unreadable, or "max"
        return None
