"""envs: a task with Python requirements, on its first, installing start and from the cache.

One control plane (warm pool). Each run first empties the environment cache (untimed, no task
running), then times the same ``run_task`` twice through the SDK, submit to Success with the logs
in hand: a task with ``python_requirements=["cowsay==6.1"]`` whose first start builds the
environment with uv (resolving and downloading from the package index, as any first use does),
then the same task again, which finds it cached. Next to them: that task without requirements.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

from taskyard.config import WorkerConfig
from taskyard.sdk import run_task

from .figures import BenchError, Figure, Target, single, spread
from .harness import call_with_timeout, expected_warm, progress, running, settle, timed
from .plan import Plan

REQUIREMENT = "cowsay==6.1"
TASK = "task.py"
# a package nothing of taskyard's own depends on, so the plain task finds none
CODE = (
    "try:\n    import cowsay\nexcept ImportError:\n    cowsay = None\nprint('cowsay', cowsay and cowsay.__version__)\n"
)
RUN_TIMEOUT = 120.0


def run(plan: Plan) -> list[Figure]:
    samples: dict[str, list[float]] = {"plain": [], "first": [], "cached": []}
    folder = Path(tempfile.mkdtemp(prefix="taskyard-bench-envs-"))
    (folder / TASK).write_text(CODE)
    try:
        with running("envs") as server:
            client = server.client()
            warm = expected_warm(server.env)
            for index in range(plan.warmup + plan.env_runs):
                for kind, seconds in _round(client, warm, folder, server.home / "envs").items():
                    if index >= plan.warmup:
                        samples[kind].append(seconds)
            progress(f"envs: {plan.env_runs} runs")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return _figures(samples)


def _round(client, warm: int, folder: Path, cache: Path) -> dict[str, float]:
    """One of each, from the same state: no task running, the pool refilled, the cache empty."""
    times = {}
    for kind in ("plain", "first", "cached"):
        settle(client, warm)
        if kind == "first":
            shutil.rmtree(cache, ignore_errors=True)
        times[kind] = call_with_timeout(lambda k=kind: _task(client, folder, k), RUN_TIMEOUT, f"envs run ({kind})")
    return times


def _task(client, folder: Path, kind: str) -> float:
    config = WorkerConfig(python_requirements=[REQUIREMENT]) if kind != "plain" else None
    expected = "cowsay 6.1" if kind != "plain" else "cowsay None"
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        seconds, (_, success) = timed(lambda: run_task(TASK, folder, config, client=client))
    building = "[setup] building" in err.getvalue()
    if not success or expected not in out.getvalue() or building != (kind == "first"):
        raise BenchError(f"{kind} task: success={success}, stdout={out.getvalue()!r}, stderr={err.getvalue()!r}")
    return seconds


def _figures(samples: dict[str, list[float]]) -> list[Figure]:
    plain = spread("envs", "task without requirements (same task, its own Python)", "s", samples["plain"])
    first = spread("envs", f"task with requirements, first start: installs {REQUIREMENT} with uv", "s",
                   samples["first"])
    cached = spread("envs", "task with cached requirements", "s", samples["cached"], target=Target("<", 0.15))
    added = single("envs", "added by cached requirements (median cached − median without)", "s",
                   cached.median - plain.median, target=Target("<", 0.02))
    saved = single("envs", "first start ÷ cached start (medians)", "×", first.median / cached.median)
    return [plain, first, cached, added, saved]
