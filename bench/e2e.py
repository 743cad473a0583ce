"""e2e: the hello-world ``run_task`` through the SDK, submit to Success with its logs in hand.

Each run gets a fresh worker; the control plane is warm (two untimed runs first). Before each run,
outside the timed part, the previous run's worker is waited out and (warm pool mode) the pool
refilled, so every run starts from the same state. Next to it: bare ``python examples/task_1.py``.
"""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

from taskyard.config import WorkerConfig
from taskyard.sdk import run_task

from .figures import BenchError, Figure, Target, spread
from .harness import EXAMPLES, HELLO, HELLO_TEXT, timed, warm_runs
from .plan import Plan

MODES = {"warm pool": {}, "cold worker": {"TASKYARD_WARM_WORKERS": "0"}}
RUN_TIMEOUT = 60.0


def run(plan: Plan) -> list[Figure]:
    bare = spread("e2e", "bare `python examples/task_1.py` (subprocess)", "s", bare_runs(plan))
    figures = [bare]
    for mode, env in MODES.items():
        samples = sdk_runs(plan, mode, env)
        figure = spread("e2e", f"hello run_task, {mode}", "s", samples, target=Target("<", 0.15))
        ratio = [s / bare.median for s in samples]
        figures += [figure, spread("e2e", f"hello run_task ÷ bare python, {mode}", "×", ratio, target=Target("<", 10))]
    return figures


def sdk_runs(plan: Plan, mode: str, env: dict[str, str]) -> list[float]:
    return warm_runs("e2e", f"e2e {mode}", plan.warmup, plan.e2e_runs, hello, RUN_TIMEOUT, **env)


def hello(client, worker_config: WorkerConfig | None = None) -> float:
    """Seconds of one hello ``run_task``, from submit to Success with its output in hand."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        seconds, (_, success) = timed(
            lambda: run_task(file_name=HELLO, files_path=EXAMPLES, worker_config=worker_config, client=client)
        )
    if not success or HELLO_TEXT not in out.getvalue():
        raise BenchError(f"hello task: success={success}, stdout={out.getvalue()!r}, stderr={err.getvalue()!r}")
    return seconds


def bare_runs(plan: Plan) -> list[float]:
    command = [sys.executable, str(EXAMPLES / HELLO)]
    samples = []
    for index in range(plan.warmup + plan.bare_runs):
        seconds, done = timed(lambda: subprocess.run(command, capture_output=True, text=True, timeout=30))
        if done.returncode != 0 or HELLO_TEXT not in done.stdout:
            raise BenchError(f"bare python failed: {done.returncode} {done.stderr!r}")
        if index >= plan.warmup:
            samples.append(seconds)
    return samples
