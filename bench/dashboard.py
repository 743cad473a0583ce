"""dashboard: how fast the web dashboard's task list answers with many tasks in the store, and /metrics.

A control plane of its own; ``plan.dashboard_tasks`` tasks are made straight in its SQLite store
through the task service: half the admin's, waiting for input; half another user's, In Queue in a
pool of no workers (``max_workers = 0``), so none is started and each shows its queue position.
Then, each the median of ``plan.dashboard_runs`` requests with an admin's bearer token over HTTP
from this process: the first page of ``/tasks``; the same filtered to one user and one status; a
page deep in the keyset pagination (the 100th, or the last there is); a task's own page; and a
``/metrics`` scrape (its gauges are grouped counts over all those tasks).
"""

from __future__ import annotations

import re
import time

import httpx
from sqlalchemy import select

from taskyard.models import PoolSpec, TaskSpec
from taskyard.server.config import builtin_sizes
from taskyard.server.db.models import UserRow
from taskyard.server.db.session import make_engine, make_sessionmaker, transaction
from taskyard.server.services import tasks as task_service

from .figures import BenchError, Figure, Target, spread
from .harness import Server, progress, running
from .plan import Plan

NEXT = re.compile(r'class="next" href="([^"]+)"')
ROW = re.compile(r'<tr data-task="([^"]+)"')


def run(plan: Plan) -> list[Figure]:
    with running("dashboard", TASKYARD_WARM_WORKERS="0") as server:
        client = server.client()
        client.add_user("bulk")
        client.create_pool(PoolSpec(name="parked", max_workers=0, shared_with=["*"]))
        _fill(server, plan.dashboard_tasks)
        progress(f"dashboard: {plan.dashboard_tasks} tasks in the store")
        with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {server.token}"}) as http:
            return _figures(plan, http)


def _fill(server: Server, count: int) -> None:
    engine = make_engine(f"sqlite:///{server.home}/taskyard.db")
    sessions = make_sessionmaker(engine)
    waiting = TaskSpec(file_name="bulk.py", bundle_sha256="0" * 64, bundle_size=1)
    queued = waiting.model_copy(update={"pool": "parked"})
    with transaction(sessions) as session:
        users = list(session.scalars(select(UserRow).order_by(UserRow.id)))
        for index in range(count):
            spec = (waiting, queued)[index % 2]
            task_service.create_task(
                session,
                users[index % 2],
                spec,
                bundle_present=spec is queued,
                images=(),
                sizes=builtin_sizes(),
                capacity=None,
            )
    engine.dispose()


def _figures(plan: Plan, http: httpx.Client) -> list[Figure]:
    deep = _deep_page(http, 100)
    first_id = ROW.findall(_get(http, "/tasks"))[0]
    asks = {
        "/tasks, first page (50 rows)": "/tasks",
        "/tasks filtered by user and status": "/tasks?owner=admin&status=waiting_for_input",
        "/tasks In Queue (50 rows with their queue positions)": "/tasks?status=in_queue",
        "/tasks, 100th page (keyset cursor)": deep,
        "/tasks/{id}, a task's page": f"/tasks/{first_id}",
        "/metrics scrape": "/metrics",
    }
    target = Target("<", 0.1)
    n = plan.dashboard_tasks
    return [
        spread("dashboard", f"{name} with {n} tasks", "s", timed_gets(http, path, plan.dashboard_runs), target=target)
        for name, path in asks.items()
    ]


def _deep_page(http: httpx.Client, pages: int) -> str:
    path = "/tasks"
    for _ in range(pages - 1):
        found = NEXT.search(_get(http, path))
        if not found:
            break
        path = found.group(1).replace("&amp;", "&")
    return path


def timed_gets(http: httpx.Client, path: str, runs: int) -> list[float]:
    """Seconds each of ``runs`` GETs of ``path`` took, after one untimed; an answer but 200 is an error."""
    _get(http, path)  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        _get(http, path)
        samples.append(time.perf_counter() - started)
    return samples


def _get(http: httpx.Client, path: str) -> str:
    answer = http.get(path)
    if answer.status_code != 200:
        raise BenchError(f"GET {path} answered {answer.status_code}: {answer.text[:300]}")
    return answer.text
