"""notebooks: a notebook task end to end against bare papermill on the same notebook, in the same run.

One control plane (warm pool). Each timed run is ``run_task("bench.ipynb")`` through the SDK, submit
to Success with its logs in hand: the agent starts ``python -m taskyard.notebook_task`` in the
sandbox, which runs papermill with a fresh ``python3`` kernel and saves the executed notebook in
the task's outputs. Next to it: ``papermill.execute_notebook`` on the same notebook in a subprocess
(``python -c``), the same kernel and options, as a user would run it by hand; and the same again
with jsonschema's IRI checker held back at import, as taskyard's runner imports papermill (see
``taskyard.notebooks.quick_jsonschema``: where jupyter-server is installed, that checker's grammar
costs seconds at every import of nbformat). The added time is taken against the latter, like for like.
"""

from __future__ import annotations

import contextlib
import io
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from taskyard.sdk import run_task

from .figures import BenchError, Figure, Target, single, spread
from .harness import timed, warm_runs
from .plan import Plan

NOTEBOOK = "bench.ipynb"
CELLS = ["x = 6 * 7", "print('answer', x)"]
EXPECTED = "answer 42"
RUN_TIMEOUT = 120.0
BARE = ("import papermill, sys; papermill.execute_notebook(sys.argv[1], sys.argv[2], kernel_name='python3', "
        "language='python', progress_bar=False, stdout_file=sys.stdout, stderr_file=sys.stderr)")
BARE_QUICK = "import sys; sys.modules['rfc3987_syntax'] = None; " + BARE


def run(plan: Plan) -> list[Figure]:
    folder = Path(tempfile.mkdtemp(prefix="taskyard-bench-notebooks-"))
    try:
        _write_notebook(folder / NOTEBOOK)
        plain = spread("notebooks", "bare `papermill.execute_notebook` (subprocess)", "s",
                       _bare_runs(plan, folder, BARE))
        bare = spread("notebooks", "bare papermill, imported as taskyard's runner does", "s",
                      _bare_runs(plan, folder, BARE_QUICK))
        task = spread("notebooks", "notebook run_task, warm pool", "s", _task_runs(plan, folder))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    added = single("notebooks", "added by taskyard (median task − median bare papermill, same import)", "s",
                   task.median - bare.median, target=Target("<", 0.3))
    return [plain, bare, task, added]


def _write_notebook(path: Path) -> None:
    cells = [{"cell_type": "code", "execution_count": None, "id": f"c{i}", "metadata": {}, "outputs": [],
              "source": source} for i, source in enumerate(CELLS)]
    path.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def _bare_runs(plan: Plan, folder: Path, code: str) -> list[float]:
    command = [sys.executable, "-c", code, str(folder / NOTEBOOK), str(folder / "bare_output.ipynb")]
    samples = []
    for index in range(plan.warmup + plan.notebook_runs):
        seconds, done = timed(lambda: subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=60))
        if done.returncode != 0 or EXPECTED not in done.stdout:
            raise BenchError(f"bare papermill failed: {done.returncode} {done.stderr[-2000:]!r}")
        if index >= plan.warmup:
            samples.append(seconds)
    return samples


def _task_runs(plan: Plan, folder: Path) -> list[float]:
    run = lambda client: _task(client, folder)  # noqa: E731
    return warm_runs("notebooks", "notebooks", plan.warmup, plan.notebook_runs, run, RUN_TIMEOUT)


def _task(client, folder: Path) -> float:
    """Seconds of one notebook ``run_task``, from submit to Success with its output in hand."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        seconds, (_, success) = timed(lambda: run_task(NOTEBOOK, folder, client=client))
    if not success or EXPECTED not in out.getvalue():
        raise BenchError(f"notebook task: success={success}, stdout={out.getvalue()!r}, stderr={err.getvalue()!r}")
    return seconds
