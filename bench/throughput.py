"""throughput: many hello tasks submitted at once, tasks/s from the first submit to all of them ended.

One untimed task first uploads the folder. Submission uses a few threads (the SDK's ``submit``,
one shared client); then every task is long-polled until it ends. Default concurrency: the pool
runs as many workers as the machine has cores. Next to the rate, from the same run: the machine's
limit (cores ÷ bare python time) and the control plane's own CPU per task (utime + stime of the
server process from ``/proc/<pid>/stat`` across the batch), on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import os
import secrets
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

from taskyard.sdk import submit
from taskyard.status import TaskStatus

from .e2e import bare_runs
from .figures import BenchError, Figure, Target, single
from .harness import EXAMPLES, HELLO, expect_status, expected_warm, progress, running, settle, wait_terminal
from .plan import Plan

THREADS = 8
TIMEOUT = 600.0
PG_ADMIN_URL = os.environ.get("TASKYARD_TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def run(plan: Plan) -> list[Figure]:
    cores = os.cpu_count() or 1
    bare = statistics.median(bare_runs(plan))
    rate, cpu_ms, note = batch(plan, "throughput")
    limit = cores / bare
    name = f"{plan.throughput_tasks} hello tasks at once, warm pool, default concurrency ({cores} workers)"
    figures = [
        single("throughput", name, "tasks/s", rate, target=Target(">=", 20), note=note),
        single("throughput", "tasks/s ÷ machine limit (cores ÷ bare python)", "×", rate / limit,
               target=Target(">=", 0.5), note=f"limit {limit:.1f} tasks/s: {cores} cores, bare python {bare:.3f} s"),
        single("throughput", "control-plane CPU per hello task, SQLite", "ms", cpu_ms, target=Target("<=", 5)),
    ]
    return figures + _postgres(plan)


def _postgres(plan: Plan) -> list[Figure]:
    with pg_database() as url:
        if url is None:
            progress(f"throughput: no PostgreSQL at {PG_ADMIN_URL}, its CPU figure left out")
            return []
        rate, cpu_ms, note = batch(plan, "throughput-pg", TASKYARD_DB_URL=url)
    return [single("throughput", "control-plane CPU per hello task, PostgreSQL", "ms", cpu_ms,
                   target=Target("<=", 5), note=f"{rate:.1f} tasks/s; {note}")]


def batch(plan: Plan, label: str, **env: str) -> tuple[float, float, str]:
    """tasks/s of one batch, the server's CPU ms per task over it, and a note."""
    count = plan.throughput_tasks
    with running(label, **env) as server:
        client = server.client()
        warmup = submit(HELLO, EXAMPLES, client=client)  # uploads the folder once; the batch finds it
        expect_status(wait_terminal(client, warmup.id), TaskStatus.SUCCESS)
        settle(client, expected_warm(server.env))
        cpu_before = cpu_seconds(server.pid)
        began = time.perf_counter()
        with ThreadPoolExecutor(THREADS) as pool:
            ids = list(pool.map(lambda _: submit(HELLO, EXAMPLES, client=client).id, range(count)))
        submitted = time.perf_counter() - began
        deadline = time.monotonic() + TIMEOUT
        with ThreadPoolExecutor(THREADS) as pool:
            ends = list(pool.map(lambda task_id: _end(client, task_id, deadline), ids))
        seconds = time.perf_counter() - began
        cpu = cpu_seconds(server.pid) - cpu_before
    failed = [f"{task_id}: {status.alias}" for task_id, status in zip(ids, ends) if status is not TaskStatus.SUCCESS]
    if failed:
        raise BenchError(f"{len(failed)} of {count} hello tasks did not succeed: {failed[:5]}")
    progress(f"{label}: {count} tasks in {seconds:.1f} s, control plane {cpu:.2f} s CPU")
    note = f"{count}/{count} Success; all submitted in {submitted:.2f} s; {seconds:.1f} s; server CPU {cpu:.2f} s"
    return count / seconds, cpu * 1000 / count, note


def cpu_seconds(pid: int) -> float:
    """User + system CPU of process ``pid`` (all its threads, not its children), from /proc."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def pg_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for one control plane, dropped afterwards; None when unreachable."""
    try:
        import psycopg
        admin = psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3)
    except Exception:  # noqa: BLE001 - no driver or no server: the figure says skipped
        yield None
        return
    name = "taskyard_bench_" + secrets.token_hex(4)
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()


def _end(client, task_id: str, deadline: float) -> TaskStatus:
    left = deadline - time.monotonic()
    if left <= 0:
        raise BenchError(f"throughput: tasks still running after {TIMEOUT:.0f} s")
    return wait_terminal(client, task_id, timeout=left).status
