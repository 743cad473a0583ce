"""The Ray side, run by ``bench/ray_side.py`` inside private namespaces: start Ray, measure, stop it.

Every job runs ``<this python> <script>`` with ``entrypoint_num_cpus=1`` on a head node with as many
CPUs as the machine has cores, so at most that many run at once, as taskyard's default pool.
Job state is polled every 10 ms (Ray Jobs has no long-poll); only 127.0.0.1 is ever contacted.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path

from .harness import EXAMPLES, HELLO, HELLO_TEXT, progress, task_folder
from .kill import SLEEPER, STUBBORN
from .logs import TICKER
from .plan import Plan
from .ray_jobs import Jobs

DASHBOARD = "http://127.0.0.1:8265"
QUEUED_STOP_WAIT = 10.0


def main() -> None:
    args = _parse()
    logging.getLogger("ray").setLevel(logging.WARNING)  # not a line per job submitted
    plan = Plan(**{k: tuple(v) if isinstance(v, list) else v for k, v in json.loads(args.plan).items()})
    cpus = os.cpu_count() or 1
    results: dict = {"cpus": cpus}
    try:
        _start(args.ray_cli, args.temp_dir, cpus)
        jobs = Jobs(DASHBOARD)
        files = {"stubborn.py": STUBBORN, "sleeper.py": SLEEPER, "ticker.py": TICKER.format(ticks=plan.ticks)}
        with task_folder(files) as folder:
            _measure(results, plan, jobs, folder, cpus)
    except Exception as exc:
        results["setup_error"] = "".join(traceback.format_exception_only(exc)).strip()
        traceback.print_exc()
    finally:
        _stop(args.ray_cli)
        Path(args.out).write_text(json.dumps(results))


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    for name in ("--out", "--plan", "--ray-cli", "--temp-dir"):
        parser.add_argument(name, required=True)
    return parser.parse_args()


def _measure(results: dict, plan: Plan, jobs: Jobs, folder: Path, cpus: int) -> None:
    steps = {
        "e2e": lambda: e2e(plan, jobs),
        "throughput": lambda: throughput(plan, jobs),
        "log latency": lambda: log_latency(plan, jobs, folder),
        "kill running": lambda: kill_running(plan, jobs, folder),
        "kill queued": lambda: kill_queued(plan, jobs, folder, cpus),
    }
    for key, step in steps.items():
        progress(f"ray: {key}")
        try:
            results[key] = step()
        except Exception as exc:
            results[key] = {"error": "".join(traceback.format_exception_only(exc)).strip()}
            traceback.print_exc()


def _start(ray_cli: str, temp_dir: str, cpus: int) -> None:
    command = [
        ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
        "--dashboard-port=8265", "--include-dashboard=true", f"--num-cpus={cpus}", "--disable-usage-stats",
        f"--temp-dir={temp_dir}",
    ]  # fmt: skip
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"ray start failed ({done.returncode}): {done.stderr[-2000:]}")
    progress(f"ray: cluster up in {time.monotonic() - began:.1f} s")


def _stop(ray_cli: str) -> None:
    try:
        subprocess.run([ray_cli, "stop"], capture_output=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as exc:
        progress(f"ray: ray stop failed ({exc}); the namespace ends what is left")


def e2e(plan: Plan, jobs: Jobs) -> dict:
    samples = []
    for index in range(plan.warmup + plan.e2e_runs):
        began = time.perf_counter()
        job = jobs.submit(HELLO, EXAMPLES)
        jobs.expect(job, "SUCCEEDED", timeout=120)
        text = jobs.logs(job)
        seconds = time.perf_counter() - began
        if HELLO_TEXT not in text:
            raise RuntimeError(f"hello job logs lack the greeting: {text[-500:]!r}")
        if index >= plan.warmup:
            samples.append(seconds)
    return {"samples": samples}


def throughput(plan: Plan, jobs: Jobs) -> dict:
    jobs.expect(jobs.submit(HELLO, EXAMPLES), "SUCCEEDED", timeout=120)  # uploads the working dir once
    count = plan.throughput_tasks
    began = time.perf_counter()
    ids = jobs.submit_many(HELLO, EXAMPLES, count)
    ends = jobs.wait_all(ids, timeout=900)
    seconds = time.perf_counter() - began
    failed = [status for status in ends.values() if status != "SUCCEEDED"]
    if failed:
        raise RuntimeError(f"{len(failed)} of {count} jobs did not succeed: {failed[:5]}")
    return {"samples": [count / seconds], "count": count, "note": f"{count}/{count} SUCCEEDED in {seconds:.1f} s"}


def log_latency(plan: Plan, jobs: Jobs, folder: Path) -> dict:
    job = jobs.submit("ticker.py", folder)
    lags = jobs.follow_lines(job, timeout=120)
    jobs.expect(job, "SUCCEEDED", timeout=60)
    return {"samples": lags, "note": f"{len(lags)} of {plan.ticks} lines"}


def kill_running(plan: Plan, jobs: Jobs, folder: Path) -> dict:
    samples = []
    for index in range(plan.warmup + plan.kill_runs):
        job = jobs.submit("stubborn.py", folder)
        jobs.wait_for_text(job, "up", timeout=120)
        began = time.perf_counter()
        jobs.stop(job)
        jobs.expect(job, "STOPPED", timeout=60)
        if index >= plan.warmup:
            samples.append(time.perf_counter() - began)
    return {"samples": samples}


def kill_queued(plan: Plan, jobs: Jobs, folder: Path, cpus: int) -> dict:
    sleepers = [jobs.submit("sleeper.py", folder) for _ in range(cpus)]
    samples = []
    try:
        for job in sleepers:
            jobs.expect(job, "RUNNING", timeout=120, terminal=False)
        for index in range(plan.warmup + plan.kill_runs):
            job = jobs.submit("stubborn.py", folder)
            if jobs.status(job) != "PENDING":
                raise RuntimeError(f"the job is {jobs.status(job)}, not PENDING")
            began = time.perf_counter()
            jobs.stop(job)
            if not jobs.reaches(job, "STOPPED", timeout=QUEUED_STOP_WAIT):
                return {"unmeasured": f"a pending job was still {jobs.status(job)} {QUEUED_STOP_WAIT:.0f} s after "
                        "stop_job: Ray stops it only once it gets a CPU to start on"}  # fmt: skip
            if index >= plan.warmup:
                samples.append(time.perf_counter() - began)
    finally:
        for job in sleepers:
            jobs.stop(job)
    return {"samples": samples}


if __name__ == "__main__":
    sys.exit(main())
