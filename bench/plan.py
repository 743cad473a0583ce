"""How much each measurement does: the full plan, and the tiny one ``--smoke`` (CI) runs."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    smoke: bool = False
    warmup: int = 2  # untimed runs before the timed ones (e2e, kill)
    e2e_runs: int = 20
    bare_runs: int = 20
    throughput_tasks: int = 200
    capacity_tasks: int = 2_000  # capacity: tasks run by agents that do no work
    ticks: int = 60  # log latency: lines printed 50 ms apart (~3 s)
    log_bytes: int = 50_000_000  # log throughput: about this much stdout
    kill_runs: int = 10
    scale_steps: tuple[int, ...] = (1_000, 5_000, 10_000)
    drain: int = 300  # completions the drain rate is taken over
    batch_tasks: int = 1_000  # scale: tasks of one submit_many call, on top of the queue
    list_runs: int = 20  # first-page list latency samples per step
    footprint_runs: int = 5
    env_runs: int = 10  # envs: first (installing) and cached starts of a task with requirements
    notebook_runs: int = 10  # notebooks: notebook tasks, and bare papermill runs
    callback_runs: int = 20  # callbacks: task exit to callback received
    workflow_runs: int = 10  # workflow: fan-in flow runs, and as many critical-path runs
    idle_seconds: float = 2.0
    outage_runs: int = 3  # outage: tasks whose control plane is down while they end
    outage_task_seconds: float = 10.0
    outage_seconds: float = 12.0  # longer than the task: it ends while the control plane is down
    submit_threads: int = 4
    dashboard_tasks: int = 10_000  # dashboard: tasks in the store while its pages are timed
    dashboard_runs: int = 20
    deep_levels: tuple[int, ...] = (1_000, 10_000, 100_000)  # deep-queue: tasks In Queue at each measure
    deep_batch: int = 1_000  # deep-queue: tasks of the timed submit_many call at each level


FULL = Plan()

SMOKE = Plan(
    smoke=True,
    warmup=0,
    e2e_runs=3,
    bare_runs=3,
    throughput_tasks=20,
    capacity_tasks=60,
    ticks=20,
    log_bytes=1_000_000,
    kill_runs=3,
    scale_steps=(100, 200),
    drain=5,
    batch_tasks=50,
    list_runs=5,
    footprint_runs=1,
    env_runs=1,
    notebook_runs=1,
    callback_runs=3,
    workflow_runs=1,
    idle_seconds=0.5,
    outage_runs=1,
    outage_task_seconds=1.0,
    outage_seconds=2.0,
    dashboard_tasks=500,
    dashboard_runs=3,
    deep_levels=(100, 300),
    deep_batch=50,
)
