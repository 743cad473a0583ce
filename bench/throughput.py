"""throughput: many hello tasks submitted at once, tasks/s from the first submit to all of them ended.

One untimed task first uploads the folder. Submission uses a few threads (the SDK's ``submit``,
one shared client); then every task is long-polled until it ends. Default concurrency: the pool
runs as many workers as the machine has cores.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor

from taskyard.sdk import submit
from taskyard.status import TaskStatus

from .figures import BenchError, Figure, Target, single
from .harness import EXAMPLES, HELLO, expect_status, expected_warm, progress, running, settle, wait_terminal
from .plan import Plan

THREADS = 8
TIMEOUT = 600.0


def run(plan: Plan) -> list[Figure]:
    count = plan.throughput_tasks
    with running("throughput") as server:
        client = server.client()
        warmup = submit(HELLO, EXAMPLES, client=client)  # uploads the folder once; the batch finds it
        expect_status(wait_terminal(client, warmup.id), TaskStatus.SUCCESS)
        settle(client, expected_warm(server.env))
        began = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            ids = list(pool.map(lambda _: submit(HELLO, EXAMPLES, client=client).id, range(count)))
        submitted = time.perf_counter() - began
        deadline = time.monotonic() + TIMEOUT
        with ThreadPoolExecutor(THREADS) as pool:
            ends = list(pool.map(lambda task_id: _end(client, task_id, deadline), ids))
        seconds = time.perf_counter() - began
    failed = [f"{task_id}: {status.alias}" for task_id, status in zip(ids, ends) if status is not TaskStatus.SUCCESS]
    if failed:
        raise BenchError(f"{len(failed)} of {count} hello tasks did not succeed: {failed[:5]}")
    progress(f"throughput: {count} tasks in {seconds:.1f} s")
    cores = os.cpu_count()
    name = f"{count} hello tasks at once, warm pool, default concurrency ({cores} workers)"
    note = f"{count}/{count} Success; all submitted in {submitted:.2f} s; {seconds:.1f} s in all"
    return [single("throughput", name, "tasks/s", count / seconds, target=Target(">=", 20), note=note)]


def _end(client, task_id: str, deadline: float) -> TaskStatus:
    left = deadline - time.monotonic()
    if left <= 0:
        raise BenchError(f"throughput: tasks still running after {TIMEOUT:.0f} s")
    return wait_terminal(client, task_id, timeout=left).status
