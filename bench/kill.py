"""kill: from the ``kill`` call to seeing Killed (long-polled with ``client.wait``), client-side.

Running: a task that prints "up" and exits on SIGTERM; it is killed once "up" has arrived.
Queued: a pool of one worker is held by a sleeper; each queued task is killed before it starts.
"""

from __future__ import annotations

import time
from functools import partial

from taskyard.sdk import Task, submit
from taskyard.status import TaskStatus

from .figures import BenchError, Figure, Target, spread
from .harness import (
    expect_status,
    expected_warm,
    progress,
    running,
    settle,
    task_folder,
    timed,
    wait_running,
    wait_terminal,
)
from .plan import Plan

STUBBORN = """\
import signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
print("up", flush=True)
for _ in range(6000):
    time.sleep(0.05)
"""
SLEEPER = """\
import time
for _ in range(18000):
    time.sleep(0.1)
"""
UP_TIMEOUT = 60.0


def run(plan: Plan) -> list[Figure]:
    with task_folder({"stubborn.py": STUBBORN, "sleeper.py": SLEEPER}) as folder:
        return [running_kills(plan, folder), queued_kills(plan, folder)]


def running_kills(plan: Plan, folder) -> Figure:
    samples = []
    with running("kill-running") as server:
        client = server.client()
        warm = expected_warm(server.env)
        for index in range(plan.warmup + plan.kill_runs):
            settle(client, warm)
            task = submit("stubborn.py", folder, client=client)
            _wait_for_up(task)
            seconds, info = timed(partial(_kill_and_wait, client, task.id))
            expect_status(info, TaskStatus.KILLED)
            if index >= plan.warmup:
                samples.append(seconds)
    progress(f"kill running: {len(samples)} kills")
    name = "kill a running task (exits on SIGTERM), warm pool"
    return spread("kill", name, "s", samples, target=Target("<", 0.3))


def queued_kills(plan: Plan, folder) -> Figure:
    samples = []
    with running("kill-queued", TASKYARD_MAX_WORKERS="1") as server:
        client = server.client()
        sleeper = submit("sleeper.py", folder, client=client)
        wait_running(client, sleeper.id)
        for index in range(plan.warmup + plan.kill_runs):
            task = submit("stubborn.py", folder, client=client)
            state = client.task(task.id)
            if state.status is not TaskStatus.IN_QUEUE:
                raise BenchError(f"kill queued: the task is {state.alias}, not In Queue")
            seconds, info = timed(partial(_kill_and_wait, client, task.id))
            expect_status(info, TaskStatus.KILLED)
            if index >= plan.warmup:
                samples.append(seconds)
        expect_status(_kill_and_wait(client, sleeper.id), TaskStatus.KILLED)
    progress(f"kill queued: {len(samples)} kills")
    name = "kill a queued task (pool of 1 held by a sleeper)"
    return spread("kill", name, "s", samples, target=Target("<", 0.05))


def _kill_and_wait(client, task_id: str):
    client.kill(task_id)
    return wait_terminal(client, task_id, timeout=30)


def _wait_for_up(task: Task) -> None:
    for stream, text in task.stream_logs(deadline=time.monotonic() + UP_TIMEOUT):
        if stream == "stdout" and "up" in text:
            return
    raise BenchError(f"task {task.id} did not print 'up' in {UP_TIMEOUT:.0f} s")
