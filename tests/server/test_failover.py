"""Two ``taskyard server`` processes on one PostgreSQL: one SIGKILLed midway and never restarted loses nothing.

Both serve one home folder (the task folders they store, the workers' folders) and one database.
500 short tasks go alternately through both; once some have finished, while others run and many
wait In Queue, server A is killed. Its workers' agents call server B instead (they were given
every live server's URL), and what A had claimed but not launched is taken back once its claim
lapses. Every task must end Success, run once (each appends its id to a file outside its folder,
sandbox off), with its whole log, all read through B by a client given both URLs, A's first.
"""

from __future__ import annotations

import secrets
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from taskyard.batch import submit_many
from taskyard.client import Client
from taskyard.status import TaskStatus

from foreground import Foreground
from support import environ_of, processes_in, wait_for, write

pytestmark = pytest.mark.postgres

TASKS = 500
BATCH = 25  # tasks per submit, alternately through A and B
LINES = 20  # each task prints this many lines
KILL_AFTER = 120  # tasks finished when A is killed
SCRIPT = """\
import os, time
task = os.environ["TASKYARD_TASK_ID"]
for number in range(LINES):
    print(f"{task} line {number}", flush=True)
time.sleep(0.1)
with open(RAN, "a") as ran:
    ran.write(task + "\\n")
"""
SETTINGS = {
    "TASKYARD_SANDBOX": "off",  # a task appends to a file outside its folder
    "TASKYARD_MAX_WORKERS": "6",
    "TASKYARD_WARM_WORKERS": "2",
    "TASKYARD_HEARTBEAT_TIMEOUT": "3",
    "TASKYARD_CLAIM_SECONDS": "5",
    "TASKYARD_PROVISION_TIMEOUT": "30",
    "TASKYARD_ROSTER_SECONDS": "1",
}


@pytest.fixture
def two_servers(tmp_path, fresh_pg_url):
    env = {**SETTINGS, "TASKYARD_ADMIN_TOKEN": secrets.token_hex(16)}
    home = tmp_path / "home"
    servers = []
    try:
        for _ in range(2):  # one after the other: the first one makes the schema and the vault key
            servers.append(Foreground(home, "--db-url", fresh_pg_url, env=env).start())
        yield servers[0], servers[1], env["TASKYARD_ADMIN_TOKEN"]
    finally:
        for server in reversed(servers):
            server.stop()


def test_killing_one_of_two_servers_loses_no_task(two_servers, tmp_path, request):
    a, b, token = two_servers
    ran = tmp_path / "ran.txt"
    folder = tmp_path / "task"
    write(folder, "main.py", f"LINES = {LINES}\nRAN = {str(ran)!r}\n" + SCRIPT)
    clients = [a.client(token), b.client(token)]
    ids = [f"t{number:04d}-{secrets.token_hex(3)}" for number in range(TASKS)]
    for start in range(0, TASKS, BATCH):
        client = clients[(start // BATCH) % 2]
        submit_many("main.py", folder, task_ids=ids[start:start + BATCH], client=client)

    def time_to_kill() -> bool:  # some tasks done, and one running on a worker A started (whose agent knew A)
        done = ran.exists() and len(ran.read_text().split()) >= KILL_AFTER
        return done and _task_runs_under(a.process.pid, a.home / "workers")

    wait_for(time_to_kill, timeout=120)
    a.process.send_signal(signal.SIGKILL)  # never restarted
    a.process.wait(timeout=10)
    through_b = Client(f"{a.url},{b.url}", token)  # A first: each call finds it gone, and B answers
    request.addfinalizer(through_b.close)
    assert through_b.set_metadata(ids[0], {"read": "through B"}) == {"read": "through B"}  # a write, too
    assert through_b.url == b.url
    running = [task for task in through_b.list_tasks(limit=500).tasks if not task.status.is_terminal()]
    assert running, "A was killed once every task had ended: nothing was left to lose"

    deadline = time.monotonic() + 240
    ended = {task_id: _ended(through_b, task_id, deadline) for task_id in ids}
    failed = {task_id: f"{info.status.alias}: {info.reason}" for task_id, info in ended.items()
              if info.status is not TaskStatus.SUCCESS}  # fmt: skip
    assert not failed, f"{len(failed)} of {TASKS} did not succeed, e.g. {list(failed.items())[:3]}"
    runs = Counter(ran.read_text().split())
    assert set(runs) == set(ids)
    assert [task_id for task_id, count in runs.items() if count > 1] == []  # none ran twice
    for task_id in ids:
        log = through_b.tail(task_id, 1 << 20)
        printed = [line for line in log.splitlines() if line.startswith(task_id)]
        assert printed == [f"{task_id} line {number}" for number in range(LINES)], (task_id, log)


def _task_runs_under(server_pid: int, workers: Path) -> bool:
    """Whether a task process runs on a worker that the server ``server_pid`` started (through its zygote)."""
    for pid in processes_in(workers):
        if "TASKYARD_TASK_ID" in (environ_of(pid) or {}) and server_pid in _ancestors(pid):
            return True
    return False


def _ancestors(pid: int) -> list[int]:
    found = []
    for _ in range(8):
        try:
            with open(f"/proc/{pid}/stat") as stat:
                pid = int(stat.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
        found.append(pid)
    return found


def _ended(client, task_id: str, deadline: float):
    while time.monotonic() < deadline:
        info = client.wait(task_id, timeout=min(30.0, max(deadline - time.monotonic(), 1.0)))
        if info.status.is_terminal():
            return info
    raise AssertionError(f"task {task_id} had not ended in time: {client.task(task_id).status.alias}")

