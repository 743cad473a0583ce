"""The times a task records: a retry's are its own, and an outage of the control plane stretches none."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import taskyard
from taskyard import TaskStatus

from support import Server, cwd_of, wait_for, write


def submit(server: Server, folder: Path, name: str, code: str, **options) -> taskyard.Task:
    write(folder, name, code)
    return taskyard.submit(name, files_path=folder, client=server.client, **options)


def in_progress_seconds(task: taskyard.Task) -> float:
    spans = [c for c in task.status_history if c.status is TaskStatus.IN_PROGRESS]
    assert len(spans) == 1 and spans[0].ended_at is not None
    return (spans[0].ended_at - spans[0].started_at).total_seconds()


def test_an_outage_of_the_control_plane_does_not_stretch_in_progress(tmp_path):
    server = Server(tmp_path / "home").start()
    try:
        task = submit(server, tmp_path, "two.py", "import time\nprint('up', flush=True)\ntime.sleep(2)\n")
        wait_for(lambda: task.refresh().status is TaskStatus.IN_PROGRESS and "up" in task.logs(), timeout=30)
        server.kill9()
        time.sleep(5)  # the task ends meanwhile; its agent reports that once the control plane is back
        server.start()
        task.client = server.client
        assert task.wait(timeout=60) is TaskStatus.SUCCESS
        assert 2.0 <= in_progress_seconds(task) < 4.0
        info = task.info
        assert (info.finished_at - info.started_at).total_seconds() < 4.5
    finally:
        server.stop()


def agent_pid(server: Server, worker_name: str) -> int:
    folder = str(server.home / "workers" / worker_name)
    found = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and cwd_of(int(pid)) == folder]
    assert len(found) == 1, f"agent processes of {worker_name}: {found}"
    return found[0]


def test_a_retry_starts_with_no_finish_time_of_its_first_attempt(server, tmp_path, readable_dir):
    marker = readable_dir / "first-attempt-lost"
    code = (
        "import pathlib, time\n"
        f"second = pathlib.Path({str(marker)!r}).exists()\n"
        "print('second' if second else 'first', flush=True)\n"
        "time.sleep(3 if second else 600)\n"
    )
    task = submit(server, tmp_path, "flaky.py", code, max_retries=1)
    wait_for(lambda: "first" in task.logs(), timeout=30)
    marker.touch()
    os.kill(agent_pid(server, task.worker_name), signal.SIGKILL)
    wait_for(lambda: "second" in task.logs(), timeout=30)
    during = task.info
    assert during.status is TaskStatus.IN_PROGRESS and during.attempt == 2
    assert during.finished_at is None
    lost = next(c for c in during.status_history if c.status is TaskStatus.TASK_RUNNER_TERMINATED)
    assert during.started_at is not None and during.started_at > lost.started_at
    assert task.wait(timeout=30) is TaskStatus.SUCCESS
    assert task.info.finished_at > during.started_at
