"""deep-queue: batch submission and the first page of the task list as the queue grows to 100,000.

On each store (SQLite, then PostgreSQL when it is reachable) a control plane of its own gets a
pool of no workers (``max_workers = 0``): every task sent there stays In Queue, and the scheduler
has nothing to place, so it does not walk the queue. The queue is filled with
``taskyard.submit_many`` to each level of ``plan.deep_levels`` (1,000, 10,000, 100,000), and at
each level one more ``submit_many`` batch of ``plan.deep_batch`` tasks is timed: its rate, and its
cost per task (wall time, and the control plane's own CPU from ``/proc``). Then the first page of
``taskyard tasks list`` (``GET /tasks?limit=20``, the CLI's default page), median of
``plan.list_runs``, and so for the views that count the queue: the dashboard's first page of
``/tasks`` (queue positions on its rows), ``GET /pools``, ``GET /pools/parked`` and a ``/metrics``
scrape. The per-task cost at the deepest level ÷ at the first is the flatness.
"""

from __future__ import annotations

import statistics

import httpx

from taskyard.batch import submit_many
from taskyard.client import Client
from taskyard.models import PoolSpec

from .dashboard import timed_gets
from .figures import BenchError, Figure, Target, single, spread
from .harness import EXAMPLES, HELLO, Server, progress, running, timed
from .plan import Plan
from .throughput import PG_ADMIN_URL, cpu_seconds, pg_database

POOL = "parked"  # max_workers 0: its tasks stay In Queue
CLI_PAGE = 20  # `taskyard tasks list` asks for this many by default
FILL_CHUNK = 10_000  # tasks per submit_many call while filling (the SDK sends them 1,000 a request)
VIEWS = {  # the views whose answers count the queue, each timed at each level: name -> path
    "dashboard /tasks first page": "/tasks",
    "GET /pools": "/api/v1/pools",
    f"GET /pools/{POOL}": f"/api/v1/pools/{POOL}",
    "/metrics scrape": "/metrics",
}
VIEW_TARGET = 50  # ms


class Level:
    """What was measured with ``queued`` tasks In Queue."""

    def __init__(self, queued: int, batch: int, seconds: float, cpu: float, list_ms: list[float]) -> None:
        self.queued, self.batch, self.seconds, self.cpu, self.list_ms = queued, batch, seconds, cpu, list_ms
        self.views_ms: dict[str, list[float]] = {}  # VIEWS' names -> their samples

    @property
    def rate(self) -> float:
        return self.batch / self.seconds

    @property
    def ms_per_task(self) -> float:
        return self.seconds * 1000 / self.batch

    @property
    def cpu_ms_per_task(self) -> float:
        return self.cpu * 1000 / self.batch


def run(plan: Plan) -> list[Figure]:
    figures = _figures(plan, "SQLite", _levels(plan, "deep-queue"))
    with pg_database() as url:
        if url is None:
            progress(f"deep-queue: no PostgreSQL at {PG_ADMIN_URL}, its figures left out")
            return figures
        return figures + _figures(plan, "PostgreSQL", _levels(plan, "deep-queue-pg", TASKYARD_DB_URL=url))


def _levels(plan: Plan, label: str, **env: str) -> list[Level]:
    with running(label, TASKYARD_WARM_WORKERS="0", **env) as server:
        client = server.client()
        client.create_pool(PoolSpec(name=POOL, max_workers=0))
        submit_many(HELLO, EXAMPLES, count=1, pool=POOL, client=client)  # uploads the folder; the rest find it
        queued, levels = 1, []
        for level in plan.deep_levels:
            queued = _fill(client, queued, level)
            levels.append(_measure(plan, server, client, queued))
            queued += plan.deep_batch
            progress(f"{label}: {levels[-1].queued:,} queued, {levels[-1].rate:.0f} submissions/s, "
                     f"first page {statistics.median(levels[-1].list_ms):.1f} ms")
        _check_queued(client, queued)
    return levels


def _fill(client: Client, queued: int, level: int) -> int:
    """Submit (untimed) until ``level`` tasks are In Queue."""
    while queued < level:
        count = min(FILL_CHUNK, level - queued)
        submit_many(HELLO, EXAMPLES, count=count, pool=POOL, client=client)
        queued += count
    return queued


def _measure(plan: Plan, server: Server, client: Client, queued: int) -> Level:
    cpu_before = cpu_seconds(server.pid)
    seconds, tasks = timed(lambda: submit_many(HELLO, EXAMPLES, count=plan.deep_batch, pool=POOL, client=client))
    cpu = cpu_seconds(server.pid) - cpu_before
    if len(tasks) != plan.deep_batch:
        raise BenchError(f"deep-queue: submit_many answered {len(tasks)} tasks, not {plan.deep_batch}")
    client.list_tasks(limit=CLI_PAGE)  # warm-up
    list_ms = [timed(lambda: client.list_tasks(limit=CLI_PAGE))[0] * 1000 for _ in range(plan.list_runs)]
    level = Level(queued, plan.deep_batch, seconds, cpu, list_ms)
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}) as http:
        level.views_ms = {name: [seconds * 1000 for seconds in timed_gets(http, path, plan.list_runs)]
                          for name, path in VIEWS.items()}
    return level


def _check_queued(client: Client, expected: int) -> None:
    """Every task is still In Queue in the parked pool: none was started or lost (checked once, at the end:
    a task's own answer would count its place in the queue)."""
    found = client.pool(POOL).queued_tasks
    if found != expected:
        raise BenchError(f"deep-queue: {found} tasks In Queue in pool {POOL!r}, not {expected}")


def _figures(plan: Plan, store: str, levels: list[Level]) -> list[Figure]:
    figures = [figure for level in levels for figure in _level_figures(plan, store, level)]
    first, last = levels[0], levels[-1]
    name = f"submit_many cost per task flatness, {store}: {last.queued:,} vs {first.queued:,} queued"
    note = f"{last.ms_per_task:.3f} ÷ {first.ms_per_task:.3f} ms/task"
    figures.append(single("deep-queue", name, "×", last.ms_per_task / first.ms_per_task,
                          target=Target("<=", 1.5), note=note))
    return figures


def _level_figures(plan: Plan, store: str, level: Level) -> list[Figure]:
    n = f"{level.queued:,} queued, {store}"
    cpu = f"control plane CPU {level.cpu_ms_per_task:.3f} ms/task"
    return [
        single("deep-queue", f"submit_many of {plan.deep_batch:,} more, {n}", "tasks/s", level.rate,
               target=Target(">=", 1000)),
        single("deep-queue", f"submit_many cost per task, {n}", "ms", level.ms_per_task, note=cpu,
               extra={"cpu_ms_per_task": level.cpu_ms_per_task}),
        spread("deep-queue", f"tasks list first page (GET /tasks?limit={CLI_PAGE}), {n}", "ms", level.list_ms,
               target=Target("<", 10)),
    ] + [spread("deep-queue", f"{name}, {n}", "ms", samples, target=Target("<", VIEW_TARGET))
         for name, samples in level.views_ms.items()]
