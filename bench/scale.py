"""scale: a deep queue behind a blocked pool, then the drain once it is unblocked, at each size.

Each size (1,000, 5,000, 10,000 tasks) gets a control plane of its own, whose pool of one worker
(``TASKYARD_MAX_WORKERS=1``) is held by a long sleeper. Hello tasks are submitted (the SDK's
``submit`` from a few threads, each with a client of its own) until that many are queued. The
first hello task uploads the folder; the rest find it on the server. Then: the submission rate,
``list_tasks(limit=50)`` first-page latency, control-plane RSS and its growth per queued task
since just before the queue was filled; and, once the sleeper is killed, the drain rate over the
first completions (the tasks submitted first, one worker at a time). Before the drain, a batch
more is submitted with ``taskyard.submit_many`` (one call) and its rate taken. A cost that is flat per task
shows as the same figures at every size.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from taskyard.batch import submit_many
from taskyard.sdk import submit
from taskyard.status import TaskStatus

from .figures import BenchError, Figure, Target, single, spread
from .harness import (
    EXAMPLES,
    HELLO,
    Server,
    expect_status,
    progress,
    running,
    task_folder,
    timed,
    wait_running,
    wait_terminal,
)
from .plan import Plan

SLEEPER = """\
import time
for _ in range(36000):
    time.sleep(0.1)
"""
BLOCKED = "pool of 1 held by a sleeper"


@dataclass
class Step:
    queued: int
    rate: float
    list_ms: list[float]
    base_mb: float
    rss_mb: float
    kb_per_task: float
    drain: float
    batch_rate: float


def run(plan: Plan) -> list[Figure]:
    steps = [_step(plan, count) for count in plan.scale_steps]
    return _figures(plan, steps)


def _step(plan: Plan, count: int) -> Step:
    with task_folder({"sleeper.py": SLEEPER}) as folder, running("scale", TASKYARD_MAX_WORKERS="1") as server:
        client = server.client()
        sleeper = submit("sleeper.py", folder, client=client)
        wait_running(client, sleeper.id)
        queued = [submit(HELLO, EXAMPLES, client=client).id]  # this one uploads the folder
        time.sleep(1.0)
        base = server.rss_mb()
        seconds, answered = timed(lambda: _submit_many(server, count - 1, plan.submit_threads))
        queued += [task_id for _, task_id in answered]  # oldest first, as the scheduler takes them
        list_ms = [timed(lambda: client.list_tasks(limit=50))[0] * 1000 for _ in range(plan.list_runs)]
        rss = server.rss_mb()
        batch_seconds, _ = timed(lambda: submit_many(HELLO, EXAMPLES, count=plan.batch_tasks, client=client))
        drain = _drain(plan, client, sleeper.id, queued)
    kb_per_task = (rss - base) * 1024 / count
    step = Step(count, (count - 1) / seconds, list_ms, base, rss, kb_per_task, drain, plan.batch_tasks / batch_seconds)
    progress(f"scale: {count} queued, {step.rate:.0f} submissions/s, RSS {rss:.0f} MB, drain {drain:.1f} tasks/s")
    return step


def _submit_many(server: Server, count: int, threads: int) -> list[tuple[float, str]]:
    """Submit ``count`` hello tasks from ``threads`` threads; ``(time answered, id)`` in that order."""
    shares = [count // threads + (1 if i < count % threads else 0) for i in range(threads)]
    clients = [server.client() for _ in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        batches = list(pool.map(_submit_share, clients, shares))
    return sorted(entry for batch in batches for entry in batch)


def _submit_share(client, count: int) -> list[tuple[float, str]]:
    return [_submit_one(client) for _ in range(count)]


def _submit_one(client) -> tuple[float, str]:
    task_id = submit(HELLO, EXAMPLES, client=client).id
    return time.monotonic(), task_id


def _drain(plan: Plan, client, sleeper_id: str, queued: list[str]) -> float:
    client.kill(sleeper_id)
    expect_status(wait_terminal(client, sleeper_id, timeout=30), TaskStatus.KILLED)
    count = min(plan.drain, len(queued))
    deadline = time.monotonic() + 60 + 2 * count
    began = time.perf_counter()
    for task_id in queued[:count]:
        left = deadline - time.monotonic()
        if left <= 0:
            raise BenchError(f"scale: the first {count} queued tasks did not drain in time")
        expect_status(wait_terminal(client, task_id, timeout=left), TaskStatus.SUCCESS)
    return count / (time.perf_counter() - began)


def _figures(plan: Plan, steps: list[Step]) -> list[Figure]:
    figures = [figure for step in steps for figure in _step_figures(plan, step)]
    first, last = steps[0], steps[-1]
    if first.kb_per_task > 0:
        name = f"per-task cost flatness, {last.queued:,} vs {first.queued:,} queued"
        note = f"{last.kb_per_task:.2f} ÷ {first.kb_per_task:.2f} KB/task"
        ratio = last.kb_per_task / first.kb_per_task
        figures.append(single("scale", name, "×", ratio, target=Target("<=", 1.5), note=note))
    return figures


def _step_figures(plan: Plan, step: Step) -> list[Figure]:
    n = f"{step.queued:,} queued"
    rate = f"submission rate to {n}, {plan.submit_threads} client threads, {BLOCKED}"
    before = f"{step.base_mb:.0f} MB before the queue was filled"
    drain = f"drain rate, first {min(plan.drain, step.queued)} completions once the sleeper is killed, {n}, pool of 1"
    return [
        single("scale", rate, "tasks/s", step.rate, target=Target(">=", 300)),
        single("scale", f"submit_many of {plan.batch_tasks:,} more, {n}", "tasks/s", step.batch_rate,
               target=Target(">=", 1000)),
        spread("scale", f"list_tasks(limit=50) first page, {n}", "ms", step.list_ms, target=Target("<", 50)),
        single("scale", f"control-plane RSS, {n}", "MB", step.rss_mb, target=Target("<", 300), note=before),
        single("scale", f"RSS growth per queued task, {n}", "KB/task", step.kb_per_task),
        single("scale", drain, "tasks/s", step.drain),
    ]
