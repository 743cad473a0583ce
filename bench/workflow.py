"""workflow: the seed's three-task fan-in on the built-in runner against its critical path, in the same run.

One control plane (warm pool). A **flow** run is ``taskyard.workflows.run(examples/workflow,
"[process_table_1, process_table_2] >> process_final_table")`` until ``wait()`` says Success,
with the final table checked. Its **critical path** is two ``run_task`` calls one after the other:
``process_table_1``, then ``process_final_table`` in a copy of the folder that already holds its
``inputs/``. Runs of the two alternate (which goes first alternates too), each from a settled pool.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import tempfile
from pathlib import Path

from taskyard.sdk import run_task
from taskyard.workflows import run as run_flow
from taskyard.workflows.models import FlowStatus

from .figures import BenchError, Figure, Target, single, spread
from .harness import EXAMPLES, call_with_timeout, expected_warm, progress, running, settle, timed
from .plan import Plan

FLOW = "[process_table_1, process_table_2] >> process_final_table"
FOLDER = EXAMPLES / "workflow"
RUN_TIMEOUT = 120.0


def run(plan: Plan) -> list[Figure]:
    staged = Path(tempfile.mkdtemp(prefix="taskyard-bench-workflow-"))
    try:
        flows, paths = _runs(plan, _stage(staged))
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    flow = spread("workflow", "fan-in of 3 tasks on the built-in runner", "s", flows)
    path = spread("workflow", "critical path: 2 run_task one after the other", "s", paths)
    ratio = single("workflow", "fan-in ÷ critical path (medians)", "×", flow.median / path.median,
                   target=Target("<", 1.5))
    return [flow, path, ratio]


def _stage(root: Path) -> Path:
    """The example folder with the inputs process_final_table reads, as the runner would give them."""
    folder = root / "tasks"
    shutil.copytree(FOLDER, folder)
    tables = {"process_table_1": ("table_1.csv", "id,city\n1,A\n"),
              "process_table_2": ("table_2.csv", "id,sales\n1,2\n")}
    for name, (table, text) in tables.items():
        (folder / "inputs" / name).mkdir(parents=True)
        (folder / "inputs" / name / table).write_text(text)
    return folder


def _runs(plan: Plan, staged: Path) -> tuple[list[float], list[float]]:
    flows: list[float] = []
    paths: list[float] = []
    with running("workflow") as server:
        client = server.client()
        warm = expected_warm(server.env)
        for index in range(plan.warmup + plan.workflow_runs):
            order = [("flow", flows), ("path", paths)]
            for kind, samples in order if index % 2 == 0 else order[::-1]:
                settle(client, warm)
                one = (lambda: _flow(client)) if kind == "flow" else (lambda: _critical_path(client, staged))
                seconds = call_with_timeout(one, RUN_TIMEOUT, f"workflow {kind}")
                if index >= plan.warmup:
                    samples.append(seconds)
        progress(f"workflow: {len(flows)} runs of each")
    return flows, paths


def _flow(client) -> float:
    seconds, flow = timed(lambda: _run_and_wait(client))
    if flow.status is not FlowStatus.SUCCESS:
        raise BenchError(f"flow run {flow.id} ended {flow.status.alias}: {flow.states}")
    return seconds


def _run_and_wait(client):
    flow = run_flow(FOLDER, FLOW, client=client)
    flow.wait(timeout=RUN_TIMEOUT)
    return flow


def _critical_path(client, staged: Path) -> float:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        seconds, results = timed(lambda: [
            run_task(file_name=f"{name}.py", files_path=staged, client=client)[1]
            for name in ("process_table_1", "process_final_table")
        ])
    if not all(results) or "final_table.csv written" not in out.getvalue():
        raise BenchError(f"critical path run_task calls: {results}, stdout={out.getvalue()[-2000:]!r}")
    return seconds
