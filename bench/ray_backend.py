"""ray-backend: taskyard's pool on a Ray cluster, next to the local backend and to Ray Jobs on the same cluster.

The hello ``run_task`` end to end and a batch of hello tasks at once, through (1) the local backend,
(2) a ``type = "ray"`` backend on a one-node Ray cluster, and (3) Ray Jobs on that very cluster,
in one run (``bench/ray_backend_child.py``), inside the private namespaces ``ray`` uses too
(see ``bench/ray_side.py``). Target: taskyard on Ray at least 5× Ray Jobs' throughput.
"""

from __future__ import annotations

from .figures import BenchError, Figure, Target, single, spread
from .plan import Plan
from .ray_side import child_results

SIDES = {"local": "taskyard, local backend", "taskyard on ray": "taskyard, ray backend", "ray jobs": "Ray Jobs"}


def run(plan: Plan) -> list[Figure]:
    return figures(child_results("bench.ray_backend_child", plan, "the ray-backend side"), plan)


def figures(results: dict, plan: Plan) -> list[Figure]:
    failed = {side: results[side]["error"] for side in SIDES if "error" in results.get(side, {"error": "not run"})}
    if results.get("setup_error") or failed:
        raise BenchError(f"ray-backend: {results.get('setup_error') or failed}")
    found = []
    for side, label in SIDES.items():
        result = results[side]
        found.append(spread("ray-backend", f"hello run_task, warm pool: {label}", "s", result["e2e"]))
        name = f"{plan.throughput_tasks} hello tasks at once: {label} ({results['cpus']} CPUs)"
        found.append(single("ray-backend", name, "tasks/s", result["throughput"], note=result["note"]))
    ratio = results["taskyard on ray"]["throughput"] / results["ray jobs"]["throughput"]
    found.append(single("ray-backend", "throughput, taskyard on Ray ÷ Ray Jobs (same cluster)", "×", ratio,
                        target=Target(">=", 5)))
    return found
