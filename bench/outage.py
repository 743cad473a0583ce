"""outage: what an outage of the control plane adds to the recorded time of a task (the issue's case:
18.3 s In Progress recorded for a 10 s task).

A task sleeps for ``outage_task_seconds`` and prints how long it ran by its own clock. Once it is
In Progress, the control plane is killed (SIGKILL) and started again ``outage_seconds`` later, so the
task ends while nobody listens: its agent holds its reports and retries. Figure: the In Progress
time the control plane recorded minus the task's own run time. The agent reports the times it saw,
so the outage should add nothing; recording arrival times would add about the outage.
"""

from __future__ import annotations

import os
import signal
import time

from taskyard import embedded
from taskyard.sdk import submit
from taskyard.status import TaskStatus

from .figures import BenchError, Figure, Target, spread
from .harness import expect_status, progress, running, task_folder, wait_running, wait_terminal
from .plan import Plan

TASK = """\
import time
began = time.time()
time.sleep({seconds})
print("ran", time.time() - began)
"""


def run(plan: Plan) -> list[Figure]:
    added = []
    files = {"sleep.py": TASK.format(seconds=plan.outage_task_seconds)}
    with running("outage") as server, task_folder(files) as folder:
        for _ in range(plan.outage_runs):
            added.append(_one(server, folder, plan))
    progress(f"outage: {len(added)} runs")
    name = (
        f"In Progress recorded − the task's own run time, {plan.outage_task_seconds:g} s task, "
        f"control plane down {plan.outage_seconds:g} s while it ends"
    )
    return [spread("outage", name, "s", added, target=Target("<", 0.5))]


def _one(server, folder, plan: Plan) -> float:
    task = submit("sleep.py", folder, client=server.client())
    wait_running(task.client, task.id)
    _kill(server)
    time.sleep(plan.outage_seconds)
    server.start()
    info = wait_terminal(server.client(), task.id, timeout=plan.outage_task_seconds + 60)
    expect_status(info, TaskStatus.SUCCESS)
    ran = float(server.client().tail(task.id, 1000).split("ran", 1)[1])
    spans = [c for c in info.status_history if c.status is TaskStatus.IN_PROGRESS and c.ended_at is not None]
    if len(spans) != 1:
        raise BenchError(f"task {task.id} has {len(spans)} In Progress spans")
    return (spans[0].ended_at - spans[0].started_at).total_seconds() - ran


def _kill(server) -> None:
    os.kill(server.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while embedded.status(server.home) is not None:
        if time.monotonic() > deadline:
            raise BenchError("the killed control plane still answers")
        time.sleep(0.05)
