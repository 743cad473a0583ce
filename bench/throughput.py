"""throughput: many hello tasks submitted at once, tasks/s from the first submit to all of them ended.

One untimed task first uploads the folder. Submission uses a few threads (the SDK's ``submit``,
one shared client); then every task is long-polled until it ends. Default concurrency: the pool
runs as many workers as the machine has cores. Next to the rate, from the same run: the machine's
limit (cores ÷ bare python time) and the control plane's own CPU per task (utime + stime of the
server process from ``/proc/<pid>/stat`` across the batch), on SQLite and on PostgreSQL. On
PostgreSQL, in the same run, the same batch through two servers on one database (the
high-availability setup: submitted and awaited alternately through each), against one server.
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
from .peers import peers_running
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
    with pg_database() as url:
        assert url is not None
        two, two_cpu_ms, two_note = peer_batch(plan, url)
    return [
        single("throughput", "control-plane CPU per hello task, PostgreSQL", "ms", cpu_ms,
               target=Target("<=", 5), note=f"{rate:.1f} tasks/s; {note}"),
        single("throughput", "two servers on one PostgreSQL: tasks/s ÷ one server's, same run", "×", two / rate,
               target=Target(">=", 0.8), note=f"two servers {two:.1f} tasks/s, one {rate:.1f} tasks/s; "
               f"both servers' CPU {two_cpu_ms:.2f} ms per task; {two_note}"),
    ]


def batch(plan: Plan, label: str, **env: str) -> tuple[float, float, str]:
    """tasks/s of one batch, the server's CPU ms per task over it, and a note."""
    with running(label, **env) as server:
        client = server.client()
        return _timed(plan, label, [client], [server.pid], expected_warm(server.env))


def peer_batch(plan: Plan, db_url: str) -> tuple[float, float, str]:
    """:func:`batch` through two servers on one PostgreSQL (``db_url``), alternately: tasks/s, both servers'
    CPU ms per task, and a note."""
    with peers_running("throughput-peers", db_url) as peers:
        return _timed(plan, "throughput-peers", peers.clients(), peers.pids(), expected_warm(peers.env))


def _timed(plan: Plan, label: str, clients: list, pids: list[int], warm: int) -> tuple[float, float, str]:
    """Submit the batch through ``clients`` in turn and await each task through the next one."""
    count = plan.throughput_tasks
    warmup = submit(HELLO, EXAMPLES, client=clients[0])  # uploads the folder once; the batch finds it
    expect_status(wait_terminal(clients[-1], warmup.id), TaskStatus.SUCCESS)
    settle(clients[0], warm)
    cpu_before = sum(cpu_seconds(pid) for pid in pids)
    began = time.perf_counter()
    through = [clients[number % len(clients)] for number in range(count)]
    with ThreadPoolExecutor(THREADS) as pool:
        ids = list(pool.map(lambda client: submit(HELLO, EXAMPLES, client=client).id, through))
    submitted = time.perf_counter() - began
    deadline = time.monotonic() + TIMEOUT
    awaited = list(zip(through[1:] + through[:1], ids))
    with ThreadPoolExecutor(THREADS) as pool:
        ends = list(pool.map(lambda pair: _end(pair[0], pair[1], deadline), awaited))
    seconds = time.perf_counter() - began
    cpu = sum(cpu_seconds(pid) for pid in pids) - cpu_before
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
