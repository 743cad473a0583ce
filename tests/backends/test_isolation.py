"""Local workers get what their size says and no more: cgroup limits, out-of-memory, GPUs, admission, sandbox modes."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskyard
from taskyard import TaskStatus, WorkerConfig

from contract import worker_handle
from support import Server, wait_for, write

S = TaskStatus
GIB = 1024**3
SIZES = """
[sizes.X-Small]
cpu = 1
memory = "1GiB"
default = true

[sizes.Half]
cpu = 0.5
memory = "512MiB"

[sizes.Medium]
cpu = 2
memory = "2GiB"

[sizes.GPU-1]
cpu = 0.25
memory = "512MiB"
gpu = 1
"""
# Prints the GPUs it got, then holds its worker until the file named by $GO exists.
HOLD = "import os, time\nprint(os.environ['CUDA_VISIBLE_DEVICES'], flush=True)\nwhile not os.path.exists(os.environ['GO']):\n    time.sleep(0.05)\n"  # noqa: E501


@pytest.fixture(scope="module")
def sized(tmp_path_factory) -> Iterator[Server]:
    """A control plane with small sizes, two (pretend) GPUs and room for four workers on this 2-core host."""
    home = tmp_path_factory.mktemp("sized")
    config = write(home.parent, f"{home.name}.toml", SIZES)
    server = Server(home, TASKYARD_CONFIG=str(config), TASKYARD_GPUS="0,1", TASKYARD_MAX_WORKERS="4").start()
    yield server
    server.stop()


def submit(server: Server, folder: Path, code: str, size: str | None = None, go: Path | None = None,
           **options) -> taskyard.Task:
    write(folder, "task.py", code)
    config = WorkerConfig(worker_size=size, env_variables={"GO": str(go)} if go else None)
    return taskyard.submit("task.py", files_path=folder, worker_config=config, client=server.client, **options)


def cgroup_limits(server: Server, worker_name: str) -> tuple[int, str, str]:
    """The worker's memory limit, CPU quota and pids limit, as its cgroups on the host hold them."""
    handle = worker_handle(server, worker_name)
    folders = [Path(folder) for folder in handle["cgroups"]]
    if handle["limits"] == "cgroup v2":
        memory, cpu, pids = (folders[0] / name for name in ("memory.max", "cpu.max", "pids.max"))
    else:  # v1: a folder per controller (memory, cpu, pids), each under its own hierarchy
        memory_folder, cpu_folder, pids_folder = folders
        memory = memory_folder / "memory.limit_in_bytes"
        cpu, pids = cpu_folder / "cpu.cfs_quota_us", pids_folder / "pids.max"
    return int(memory.read_text()), cpu.read_text().split()[0], pids.read_text().strip()


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_a_worker_is_held_to_its_size_by_cgroups(sized, tmp_path):
    code = "import os, time\nprint('up', len(os.sched_getaffinity(0)), flush=True)\ntime.sleep(60)\n"
    task = submit(sized, tmp_path, code, size="half")
    wait_for(lambda: "up" in task.logs(), timeout=30)
    assert task.logs().strip() == "up 1"  # half a core: one core to run on, and a quota of half of it
    worker = sized.client.worker(task.worker_name)
    assert worker.size == "Half" and worker.sandboxed is True
    if not (worker.limits or "").startswith("cgroup"):
        task.kill()
        pytest.skip(f"this host gives taskyard no cgroups ({worker.limits})")
    assert cgroup_limits(sized, worker.name) == (512 * 1024**2, "50000", "2048")
    task.kill()


def test_a_memory_hog_ends_failed_and_says_it_ran_out_of_memory(sized, tmp_path):
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(64 * 1024 * 1024))\n"
    task = submit(sized, tmp_path, hog, size="X-Small")
    assert task.wait(timeout=60) is S.FAILED
    message = "out of memory: worker size X-Small allows 1 GiB"
    assert task.info.reason == message
    assert f"[taskyard] {message}" in task.logs()


def test_gpus_are_handed_out_one_worker_at_a_time(sized, tmp_path, readable_dir):
    go = {name: readable_dir / name for name in ("a", "b", "c")}
    first, second, third = (submit(sized, tmp_path / name, HOLD, "GPU-1", go[name]) for name in go)
    wait_for(lambda: first.logs() and second.logs(), timeout=30)
    assert {first.logs().strip(), second.logs().strip()} == {"0", "1"}
    time.sleep(1)
    assert third.refresh().status is S.IN_QUEUE, "a third 1-GPU worker started with only two GPUs"
    freed = first.logs().strip()
    go["a"].touch()
    assert first.wait(timeout=30) is S.SUCCESS
    wait_for(lambda: third.logs(), timeout=30)
    assert third.logs().strip() == freed
    go["b"].touch()
    go["c"].touch()
    assert second.wait(timeout=30) is third.wait(timeout=30) is S.SUCCESS


def test_a_worker_without_gpus_sees_none(sized, tmp_path):
    task = submit(sized, tmp_path, "import os\nprint(repr(os.environ['CUDA_VISIBLE_DEVICES']))\n", size="half")
    assert task.wait(timeout=30) is S.SUCCESS
    assert task.logs().strip() == "''"


def test_sizes_that_fit_but_not_now_wait_in_queue(sized, tmp_path, readable_dir):
    """Two Medium workers (2 cores each) do not fit this 2-core host at once, though the pool allows 4."""
    if (os.cpu_count() or 1) >= 4:
        pytest.skip("this host holds two Medium workers at once")
    go = {name: readable_dir / name for name in ("a", "b")}
    tasks = {name: submit(sized, tmp_path / name, HOLD, "Medium", go[name]) for name in go}
    wait_for(lambda: any(task.logs() for task in tasks.values()), timeout=30)
    running = next(name for name, task in tasks.items() if task.logs())
    waiting = "b" if running == "a" else "a"
    time.sleep(1)
    assert tasks[waiting].refresh().status is S.IN_QUEUE
    go[running].touch()
    assert tasks[running].wait(timeout=30) is S.SUCCESS
    wait_for(lambda: tasks[waiting].logs(), timeout=30)
    go[waiting].touch()
    assert tasks[waiting].wait(timeout=30) is S.SUCCESS


# -- sandbox modes -------------------------------------------------------------------------------


def test_with_the_sandbox_off_workers_say_they_are_not_sandboxed(tmp_path):
    server = Server(tmp_path / "home", TASKYARD_SANDBOX="off").start()
    try:
        task = submit(server, tmp_path / "t", "print('hi')\n")
        assert task.wait(timeout=30) is S.SUCCESS
        assert server.client.worker(task.worker_name).sandboxed is False
    finally:
        server.stop()


def test_without_bwrap_auto_runs_unsandboxed_with_a_warning_and_required_refuses(tmp_path):
    no_bwrap = {"PATH": "/nonexistent"}
    auto = Server(tmp_path / "auto", **no_bwrap).start()
    try:
        task = submit(auto, tmp_path / "t", "print('hi')\n")
        assert task.wait(timeout=30) is S.SUCCESS
        assert auto.client.worker(task.worker_name).sandboxed is False
        assert "workers are NOT sandboxed" in (auto.home / "server.log").read_text()
    finally:
        auto.stop()
    required = Server(tmp_path / "required", TASKYARD_SANDBOX="required", **no_bwrap).start()
    try:
        task = submit(required, tmp_path / "t", "print('hi')\n")
        assert task.wait(timeout=30) is S.RUNTIME_ERROR
        assert "TASKYARD_SANDBOX=required" in task.info.reason and "bubblewrap" in task.info.reason
    finally:
        required.stop()
