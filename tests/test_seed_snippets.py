'''The code cells of the seed pages, run as their readers run them, with only the import changed:
``import practicuscore as prt`` -> ``import taskyard as prt`` and ``import inductiva`` ->
``import taskyard as inductiva``.

Each page is run as a notebook is: its cells one after another in one fresh interpreter, sharing
their names; a cell that raises is reported and the next one runs. The cells are copied below as
published (shared/seeds/); their task files are in tests/practicus_seeds/.

Not here: the notebook, vault, workflow (Airflow DAG) and Task Runner cells, and ``prt.regions``,
which their own features test; and Inductiva's simulator and machine-group cells (seed 004,
"Task Creation"), which start a simulator of Inductiva's cloud, not a task of ours: the Task cells
that follow them run here on a task of ours with the id the page shows.
'''

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import taskyard
from taskyard import TaskStatus
from taskyard.errors import Conflict

from support import Server, write

SEEDS = Path(__file__).resolve().parent / "practicus_seeds"
PORTED_IMPORTS = {
    "import practicuscore as prt": "import taskyard as prt",
    "import inductiva": "import taskyard as inductiva",
}

# -- seed 000, "Running Tasks on Practicus AI Workers" ---------------------------------------------

TASK_BASICS = [
    '''import practicuscore as prt

# This call:
#  - Creates a new Worker
#  - Uploads files from the current directory by default
#  - Runs 'task_1.py'
#  - Captures and prints the script output
#  - Terminates the Worker after completion
prt.run_task(file_name="task_1.py")

print("Task completed and worker is terminated.")
''',
    '''# Running a shell script task
prt.run_task(file_name="task_2.sh")
print("Shell task completed and worker is terminated.")
''',
    '''# Customizing the worker environment

# Example startup script (uncomment to use):
# startup_script = """
# sudo apt-get update
# sudo apt-get install -y some-package
# pip install some-library
# """

worker_config = prt.WorkerConfig(
    worker_image="practicus",
    worker_size="X-Small",
    # startup_script=startup_script,
)

# This task intentionally fails to demonstrate debugging
worker, success = prt.run_task(
    file_name="task_with_error.py",
    worker_config=worker_config,
    terminate_on_completion=False,  # Keep the worker alive to inspect
)

print("Task execution finished, next cell to investigate...")
''',
    '''# If the task failed, inspect the environment.
# Uploaded files and logs are in ~/practicus/task/

if not success:
    # Opens Jupyter notebook in a new browser tab to troubleshoot
    worker.open_notebook()
''',
    '''print(f"Done analyzing, now terminating {worker.name}.")
worker.terminate()
''',
]

# -- seed 001, "Customizing Task Parameters" -------------------------------------------------------

TASK_PARAMETERS = [
    '''import practicuscore as prt

worker_config = prt.WorkerConfig(
    worker_image="practicus",  # The base container image
    worker_size="X-Small",  # Size configuration
    env_variables={"MY_FIRST_PARAM": "VALUE1", "MY_SECOND_PARAM": 123},
)

worker, success = prt.run_task(
    file_name="task.py",  # The name of the script to run
    worker_config=worker_config,
)

print("Task finished with status:", success)
''',
    '''worker_config_json = worker_config.model_dump_json(exclude_none=True)

with open("task_worker.json", "wt") as f:
    f.write(worker_config_json)

print("Generated worker_config JSON:\\n", worker_config_json)
''',
]

# -- seed 004, Inductiva "Tasks" ---------------------------------------------------------------------

INDUCTIVA_ID = "i4ir3kvv62odsfrhko4y8w2an"
INDUCTIVA_TASKS = [
    # "Task Creation": the interpreter session, its >>> prompts taken away
    '''import inductiva

task1 = inductiva.tasks.Task("i4ir3kvv62odsfrhko4y8w2an")
task2 = inductiva.tasks.Task("i4ir3kvv62odsfrhko4y8w2an")
print(id(task1))
print(id(task2))
print(task1.id)
print(task2.id)
''',
    "task = task1  # the page's task came from its simulator cell\n",
    '''# Block the call until the simulation completes
task.wait()  # <- The remote simulation WILL NOT DIE if the local session is
             #    interrupted while waiting for the wait() call to return
''',
    '''# Block the call until the simulation completes
with task.sync_context():
    task.wait()  # <- The remote simulation WILL DIE if the local session is
                 #     interrupted while waiting for the wait() call to return
''',
]

RUNNER = """import json, sys
namespace = {"__name__": "__main__"}
for number, cell in enumerate(json.load(sys.stdin), 1):
    try:
        exec(compile(cell, f"<cell {number}>", "exec"), namespace)
    except Exception as exc:
        print(f"cell {number} raised {type(exc).__name__}: {exc}", flush=True)
"""


def port(cell: str) -> str:
    """The cell with its import changed, and nothing else."""
    lines = [PORTED_IMPORTS.get(line, line) for line in cell.split("\n")]
    assert sum(a != b for a, b in zip(cell.split("\n"), lines)) <= 1
    return "\n".join(lines)


def run_page(server: Server, cells: list[str], folder: Path) -> str:
    """Run the ported cells in a fresh interpreter in ``folder``, talking to ``server``; what it printed."""
    env = {**os.environ, "TASKYARD_URL": server.url, "TASKYARD_TOKEN": server.token}
    done = subprocess.run(
        [sys.executable, "-c", RUNNER], input=json.dumps([port(cell) for cell in cells]), cwd=folder, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout + done.stderr


def seed_folder(name: str, tmp_path: Path) -> Path:
    """A copy of the page's task files (a cell may write beside them)."""
    return Path(shutil.copytree(SEEDS / name, tmp_path / name))


def test_every_ported_cell_changes_only_its_import():
    for cell in (*TASK_BASICS, *TASK_PARAMETERS, *INDUCTIVA_TASKS):
        assert "practicuscore" not in port(cell) and "import inductiva\n" not in port(cell)


def test_seed_000_running_tasks(server, tmp_path):
    out = run_page(server, TASK_BASICS, seed_folder("task_basics", tmp_path))
    for line in (
        "Hello from simple task 1",
        "Task completed and worker is terminated.",
        "Hello from simple task 2",
        "Shell task completed and worker is terminated.",
        "Starting task..",
        "NotImplementedError: Still baking..",
        "Task execution finished, next cell to investigate...",
    ):
        assert line in out, out
    assert "Jupyter server in worker " in out and "cell 4 raised" not in out  # opened inside the kept worker
    name = out.split("Done analyzing, now terminating ", 1)[1].split(".", 1)[0]
    worker = taskyard.Worker(name, client=server.client)
    assert "Still baking.." in worker.get_logs()
    assert worker.status.value in ("Terminating", "Terminated")
    assert "cell 5 raised" not in out


def test_seed_001_task_parameters(server, tmp_path):
    folder = seed_folder("task_parameters", tmp_path)
    out = run_page(server, TASK_PARAMETERS, folder)
    assert "First Param: VALUE1\nSecond Param: 123\n" in out, out
    assert "Task finished with status: True" in out and "Generated worker_config JSON:" in out
    written = json.loads((folder / "task_worker.json").read_text())
    assert (written["worker_image"], written["worker_size"]) == ("practicus", "X-Small")
    params = json.loads(base64.b64decode(written["additional_params"]))
    assert params["env_variables"]["MY_FIRST_PARAM"] == "VALUE1"
    assert str(params["env_variables"]["MY_SECOND_PARAM"]) == "123"
    # "Practicus AI automatically picks that up": the JSON beside task.py is its worker config
    worker, success = taskyard.run_task("task.py", folder, client=server.client)
    assert success and "Second Param: 123" in taskyard.tasks.get_tasks(1, client=server.client)[0].logs()


def test_seed_004_inductiva_tasks(server, tmp_path):
    write(tmp_path / "sim", "sim.py", "import time\nprint('simulating', flush=True)\ntime.sleep(1)\n")
    try:
        taskyard.submit("sim.py", tmp_path / "sim", task_id=INDUCTIVA_ID, client=server.client)
    except Conflict:
        pytest.skip("the page's task id is taken on this server")
    out = run_page(server, INDUCTIVA_TASKS, tmp_path)
    lines = out.splitlines()
    assert lines[2:4] == [INDUCTIVA_ID, INDUCTIVA_ID] and lines[0] != lines[1], out  # two objects, one task
    assert "raised" not in out, out
    assert taskyard.Task(INDUCTIVA_ID, client=server.client).status is TaskStatus.SUCCESS
