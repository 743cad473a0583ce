"""Nothing waits for good: a capped log ends, and so do the commands that follow it."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import taskyard
from taskyard.status import TaskStatus

from support import Server, write

LINES = "for i in range(2000):\n    print('line', i, 'x' * 40)\n"


@pytest.fixture(scope="module")
def capped(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("capped"), TASKYARD_LOG_CAP_MB="0.01").start()
    yield server
    server.stop()


def _cli(server: Server, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "TASKYARD_URL": server.url, "TASKYARD_TOKEN": server.token}
    return subprocess.run(
        [sys.executable, "-m", "taskyard", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_a_capped_log_ends_once_its_task_has(capped, tmp_path):
    write(tmp_path, "loud.py", LINES)
    task = taskyard.submit("loud.py", files_path=tmp_path, client=capped.client)
    assert task.wait(timeout=60) is TaskStatus.SUCCESS
    after, pages = 0, 0
    while True:
        page = capped.client.logs(task.id, after=after, wait=5)
        after, pages = page.last_seq, pages + 1
        if page.done:
            break
        assert pages < 50, "the log never said it was done"
    assert "log truncated" in task.logs()


def test_taskyard_run_and_tasks_logs_follow_end_on_a_capped_log(capped, tmp_path):
    write(tmp_path, "loud.py", LINES)
    ran = _cli(capped, "run", "loud.py", "--files", str(tmp_path))
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.startswith("line 0 ") and "log truncated" in ran.stdout
    task = taskyard.submit("loud.py", files_path=tmp_path, client=capped.client)
    followed = _cli(capped, "tasks", "logs", "-f", task.id)
    assert followed.returncode == 0, followed.stderr
    assert "log truncated" in followed.stdout
