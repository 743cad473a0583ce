"""What the local backend's host holds: GPUs from nvidia-smi, memory and cores within the cgroup's limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskyard.backends.local import host

from support import write

FAKE_NVIDIA_SMI = """#!/bin/sh
[ "$1" = "-L" ] || exit 2
echo "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-0f1e)"
echo "  MIG 1g.5gb      Device  0: (UUID: MIG-77aa)"
echo "GPU 1: NVIDIA A100-SXM4-40GB (UUID: GPU-2b3c)"
"""

PHYSICAL = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def on_path(folder: Path, script: str, monkeypatch) -> None:
    """Make ``folder`` the whole PATH, with ``nvidia-smi`` in it running ``script``."""
    write(folder, "nvidia-smi", script).chmod(0o755)
    monkeypatch.setenv("PATH", str(folder))


# -- GPUs -----------------------------------------------------------------------------------------


def test_gpus_are_the_indexes_nvidia_smi_lists(tmp_path, monkeypatch):
    on_path(tmp_path, FAKE_NVIDIA_SMI, monkeypatch)
    assert host.detect_gpus() == ("0", "1")
    assert host.host_capacity().gpus == ("0", "1")


def test_given_gpus_override_what_is_found(tmp_path, monkeypatch):
    on_path(tmp_path, FAKE_NVIDIA_SMI, monkeypatch)
    assert host.host_capacity(("3",)).gpus == ("3",)
    assert host.host_capacity(()).gpus == ()


def test_no_nvidia_smi_means_no_gpus(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert host.host_capacity().gpus == ()


def test_a_failing_nvidia_smi_means_no_gpus(tmp_path, monkeypatch):
    on_path(tmp_path, "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n", monkeypatch)
    assert host.detect_gpus() == ()


# -- cgroups --------------------------------------------------------------------------------------


def cgroup_v2(root: Path, files: dict[str, str]) -> Path:
    """A cgroup v2 tree under ``root`` with this process in ``/a/b``; returns its /proc/self/cgroup."""
    for name, text in files.items():
        write(root / "sys", name, text)
    return write(root, "cgroup", "0::/a/b\n")


def test_v2_limits_are_the_smallest_on_the_way_to_the_root(tmp_path):
    proc = cgroup_v2(
        tmp_path,
        {"a/b/memory.max": "max\n", "a/memory.max": "1073741824\n", "a/b/cpu.max": "150000 100000\n"},
    )
    sys_root = tmp_path / "sys"
    assert host.cgroup_memory_limit(proc, sys_root) == 1 << 30
    assert host.cgroup_cpu_limit(proc, sys_root) == 1.5
    assert host.memory_bytes(proc, sys_root) == min(PHYSICAL, 1 << 30)
    assert host.cpu_count(proc, sys_root) == min(len(os.sched_getaffinity(0)), 1.5)


def test_v2_without_limits(tmp_path):
    proc = cgroup_v2(tmp_path, {"a/b/memory.max": "max\n", "a/b/cpu.max": "max 100000\n"})
    assert host.cgroup_memory_limit(proc, tmp_path / "sys") is None
    assert host.cgroup_cpu_limit(proc, tmp_path / "sys") is None
    assert host.memory_bytes(proc, tmp_path / "sys") == PHYSICAL


def test_v1_limits_and_its_huge_no_limit(tmp_path):
    sys_root = tmp_path / "sys"
    write(sys_root, "memory/x/memory.limit_in_bytes", "9223372036854771712\n")  # v1's "no limit"
    write(sys_root, "memory/memory.limit_in_bytes", "536870912\n")
    write(sys_root, "cpu,cpuacct/x/cpu.cfs_quota_us", "-1\n")
    write(sys_root, "cpu,cpuacct/x/cpu.cfs_period_us", "100000\n")
    write(sys_root, "cpu,cpuacct/cpu.cfs_quota_us", "50000\n")
    write(sys_root, "cpu,cpuacct/cpu.cfs_period_us", "100000\n")
    proc = write(tmp_path, "cgroup", "12:pids:/x\n4:memory:/x\n3:cpu,cpuacct:/x\n1:name=systemd:/x\n")
    assert host.cgroup_memory_limit(proc, sys_root) == 512 << 20
    assert host.cgroup_cpu_limit(proc, sys_root) == 0.5


@pytest.mark.parametrize("text", ["", "nonsense\n", "0::/a\n", "4:memory:/x\n"])
def test_unreadable_or_missing_cgroup_files_fall_back_to_the_machine(tmp_path, text):
    proc = write(tmp_path, "cgroup", text)
    write(tmp_path / "sys", "a/memory.max", "lots\n")
    assert host.memory_bytes(proc, tmp_path / "sys") == PHYSICAL
    assert host.cpu_count(proc, tmp_path / "sys") == len(os.sched_getaffinity(0))


def test_a_missing_proc_file_falls_back_to_the_machine(tmp_path):
    assert host.memory_bytes(tmp_path / "none", tmp_path) == PHYSICAL


def test_this_hosts_capacity_is_sane():
    capacity = host.host_capacity(())
    assert 0 < capacity.cpu <= (os.cpu_count() or 1)
    assert 0 < capacity.memory <= PHYSICAL
