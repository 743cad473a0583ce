"""capacity: tasks/s one control plane sustains when its agents run elsewhere and cost it nothing.

Its pool's backend is the ``idle`` plug-in (``bench/plugin``): its agents, all in one process of
their own, speak the real agent protocol, and each task succeeds at once with a one-line log.
What is left is the control plane's own work per task: the submit, the scheduler's claim, the
worker's launch and end, the agent's calls (heartbeats, next, events, finish). Tasks go in with
``submit_many`` (250 a call); the end is when the agents hold the control
plane's acknowledgement of every finish (counted in a file, so counting costs the server
nothing). Next to the rate: the server's CPU per task (utime + stime, not its children), and the
rate that CPU would allow on one core of its own. On SQLite, then on PostgreSQL.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from taskyard.batch import submit_many
from taskyard.sdk import submit
from taskyard.status import TaskStatus

from .figures import BenchError, Figure, Target, single
from .harness import EXAMPLES, HELLO, expect_status, progress, running, settle, wait_terminal
from .plan import Plan
from .throughput import cpu_seconds, pg_database

PLUGIN = Path(__file__).resolve().parent / "plugin"
FINISHED = "idle-agents.finished"  # written by plugin/idle_agents.py in the control plane's folder
WORKERS = 32  # agents at once: a remote backend's pool is not bound by this machine's cores
WARM = 16
BATCH = 250  # tasks a submit_many call: the first are running while the rest go in
TIMEOUT = 600.0
CONFIG = f"""
backend = "idle"
max_workers = {WORKERS}
warm_workers = {WARM}

[backends.idle]
type = "idle"
threads = 8
"""


def run(plan: Plan) -> list[Figure]:
    figures = _figures("SQLite", *batch(plan, "capacity"))
    with pg_database() as url:
        if url is None:
            progress("capacity: no PostgreSQL reachable, its figures left out")
            return figures
        return figures + _figures("PostgreSQL", *batch(plan, "capacity-pg", TASKYARD_DB_URL=url))


def _figures(store: str, rate: float, cpu_ms: float, note: str) -> list[Figure]:
    name = f"{WORKERS} agents that do no work, {store}"
    return [
        single("capacity", f"tasks/s, {name}", "tasks/s", rate, target=Target(">=", 500), note=note),
        single("capacity", f"control-plane CPU per task, {name}", "ms", cpu_ms, target=Target("<=", 4),
               note=f"{1000 / cpu_ms:.0f} tasks/s per core of server CPU; 500 tasks/s on 2 cores is 4 ms"),
    ]


def batch(plan: Plan, label: str, **env: str) -> tuple[float, float, str]:
    """tasks/s of ``plan.capacity_tasks`` tasks on idle agents, the server's CPU ms per task, and a note."""
    count = plan.capacity_tasks
    with tempfile.TemporaryDirectory(prefix="taskyard-bench-capacity-") as folder:
        config = Path(folder) / "server.toml"
        config.write_text(CONFIG)
        path = os.pathsep.join(filter(None, [str(PLUGIN), os.environ.get("PYTHONPATH")]))
        with running(label, TASKYARD_CONFIG=str(config), PYTHONPATH=path, **env) as server:
            client = server.client()
            expect_status(wait_terminal(client, submit(HELLO, EXAMPLES, client=client).id), TaskStatus.SUCCESS)
            settle(client, WARM)
            finished = server.home / FINISHED
            before, cpu_before, began = _count(finished), cpu_seconds(server.pid), time.perf_counter()
            ids = [task.id for start in range(0, count, BATCH)
                   for task in submit_many(HELLO, EXAMPLES, count=min(BATCH, count - start), client=client)]
            submitted = time.perf_counter() - began
            _wait_count(finished, before + count)
            seconds = time.perf_counter() - began
            cpu = cpu_seconds(server.pid) - cpu_before
            _check_all_succeeded(client, ids)
    progress(f"{label}: {count} tasks in {seconds:.2f} s, control plane {cpu:.2f} s CPU")
    note = f"{count}/{count} Success; submitted in {submitted:.2f} s; {seconds:.2f} s; server CPU {cpu:.2f} s"
    return count / seconds, cpu * 1000 / count, note


def _count(finished: Path) -> int:
    return finished.stat().st_size if finished.exists() else 0


def _wait_count(finished: Path, wanted: int) -> None:
    deadline = time.monotonic() + TIMEOUT
    while _count(finished) < wanted:
        if time.monotonic() > deadline:
            raise BenchError(f"capacity: {wanted - _count(finished)} tasks not finished after {TIMEOUT:.0f} s")
        time.sleep(0.01)


def _check_all_succeeded(client, ids: list[str]) -> None:
    ends = [(task_id, client.task(task_id)) for task_id in ids]
    failed = [(task_id, info.alias) for task_id, info in ends if info.status is not TaskStatus.SUCCESS]
    if failed:
        raise BenchError(f"capacity: {len(failed)} of {len(ids)} tasks did not succeed: {failed[:5]}")
