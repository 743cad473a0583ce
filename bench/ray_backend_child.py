"""The ``ray-backend`` part, run by ``bench/ray_backend.py`` inside private namespaces.

One Ray head node (as many CPUs as the machine has cores, dashboard on 127.0.0.1 for Ray Jobs)
serves both Ray sides: taskyard's default pool on a ``type = "ray"`` backend, and Ray Jobs. The
local backend is measured in the same run, with the same server settings. Each side: the hello
``run_task`` end to end (warm pool: two workers started ahead), then a batch of hello tasks
submitted at once, tasks/s from the first submit to the last end. Ray Jobs go first, on a
cluster that nothing else holds (taskyard's workers outlive their control plane, as they should).
"""

from __future__ import annotations

import json
import logging
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from taskyard.sdk import submit
from taskyard.status import TaskStatus

from .e2e import hello
from .harness import EXAMPLES, HELLO, expect_status, expected_warm, progress, running, settle, wait_terminal
from .plan import Plan
from .ray_child import DASHBOARD, _parse, _start, _stop
from .ray_child import e2e as jobs_e2e
from .ray_child import throughput as jobs_throughput
from .ray_jobs import Jobs

GCS = "127.0.0.1:6379"
THREADS = 8
TIMEOUT = 900.0
CONFIG = """\
backend = "ray"

[backends.ray]
type = "ray"
address = "{address}"
"""


def main() -> None:
    args = _parse()
    logging.getLogger("ray").setLevel(logging.WARNING)
    plan = Plan(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.plan).items()})
    results: dict = {"cpus": os.cpu_count() or 1}
    try:
        _start(args.ray_cli, args.temp_dir, results["cpus"])
        config = Path(args.temp_dir).parent / "server.toml"
        config.write_text(CONFIG.format(address=GCS))
        results["ray jobs"] = _guarded("ray jobs", lambda: jobs_side(plan))  # first: on a cluster nothing holds
        results["local"] = _guarded("local", lambda: taskyard_side(plan, {}))
        env = {"TASKYARD_CONFIG": str(config)}
        results["taskyard on ray"] = _guarded("taskyard on ray", lambda: taskyard_side(plan, env))
    except Exception as exc:
        results["setup_error"] = "".join(traceback.format_exception_only(exc)).strip()
        traceback.print_exc()
    finally:
        _stop(args.ray_cli)
        Path(args.out).write_text(json.dumps(results))


def _guarded(side: str, measure) -> dict:
    progress(f"ray-backend: {side}")
    try:
        return measure()
    except Exception as exc:
        traceback.print_exc()
        return {"error": "".join(traceback.format_exception_only(exc)).strip()}


def taskyard_side(plan: Plan, env: dict[str, str]) -> dict:
    with running("ray-backend", **env) as server:
        client = server.client()
        warm = expected_warm(server.env)
        samples = []
        for index in range(plan.warmup + plan.e2e_runs):
            settle(client, warm, timeout=60)
            seconds = hello(client)
            if index >= plan.warmup:
                samples.append(seconds)
        settle(client, warm, timeout=60)
        rate, note = batch(client, plan.throughput_tasks)
    return {"e2e": samples, "throughput": rate, "note": note}


def batch(client, count: int) -> tuple[float, str]:
    """Tasks/s of ``count`` hello tasks submitted at once, and what happened."""
    began = time.perf_counter()
    with ThreadPoolExecutor(THREADS) as pool:
        ids = list(pool.map(lambda _: submit(HELLO, EXAMPLES, client=client).id, range(count)))
    deadline = time.monotonic() + TIMEOUT
    with ThreadPoolExecutor(THREADS) as pool:
        ends = list(pool.map(lambda task: wait_terminal(client, task, timeout=deadline - time.monotonic()), ids))
    seconds = time.perf_counter() - began
    for info in ends:
        expect_status(info, TaskStatus.SUCCESS)
    return count / seconds, f"{count}/{count} Success in {seconds:.1f} s"


def jobs_side(plan: Plan) -> dict:
    jobs = Jobs(DASHBOARD)
    samples = jobs_e2e(plan, jobs)["samples"]
    found = jobs_throughput(plan, jobs)
    return {"e2e": samples, "throughput": found["samples"][0], "note": found["note"]}


if __name__ == "__main__":
    main()
