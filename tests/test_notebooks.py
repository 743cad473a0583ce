"""Notebook tasks end to end: ``.ipynb`` files run with papermill in the task's sandbox, with parameters,
cell output in the logs, the executed notebook in the outputs; and ``taskyard.notebooks`` inside tasks."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskyard
from taskyard import TaskStatus
from taskyard.errors import InvalidInput

from support import Server, processes_in, wait_for, write

pytest.importorskip("papermill")


def notebook(folder: Path, name: str, *cells: str, parameters: str | None = None) -> Path:
    """A notebook of code cells, with no kernelspec in its metadata (the runner names the kernel);
    ``parameters`` is a first cell tagged ``parameters``."""
    sources = ([parameters] if parameters is not None else []) + list(cells)
    made = [_cell(i, source, ["parameters"] if parameters is not None and i == 0 else []) for i, source in
            enumerate(sources)]
    return write(folder, name, json.dumps({"cells": made, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))


def _cell(index: int, source: str, tags: list[str]) -> dict:
    return {"cell_type": "code", "execution_count": None, "id": f"cell-{index}", "metadata": {"tags": tags},
            "outputs": [], "source": source}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[Server]:
    started = Server(tmp_path_factory.mktemp("notebooks")).start()
    yield started
    started.stop()


def run(server: Server, folder: Path, name: str, **options) -> taskyard.Task:
    task = taskyard.submit(name, files_path=folder, client=server.client, **options)
    task.wait(timeout=120)
    return task


def outputs(task: taskyard.Task, folder: Path) -> Path:
    return task.download_outputs(output_dir=folder / "downloaded")


def stdout_of(path: Path) -> list[str]:
    """The text each code cell of an executed notebook printed, cell by cell."""
    cells = json.loads(path.read_text())["cells"]
    return ["".join("".join(out.get("text", "")) for out in cell["outputs"]) for cell in cells]


# -- .ipynb tasks ------------------------------------------------------------------------------------


def test_a_notebook_task_runs_each_cell_and_its_output_is_in_the_logs(server, tmp_path):
    notebook(tmp_path, "nb.ipynb", "import sys\nprint('first', sys.executable)", "print('second')")
    task = run(server, tmp_path, "nb.ipynb")
    assert task.status is TaskStatus.SUCCESS, task.logs()
    logs = task.logs()
    assert "second" in logs and f"first {Path(__import__('sys').executable)}" in logs  # the task's interpreter
    assert logs.index("first") < logs.index("second")


def test_the_executed_notebook_is_in_the_outputs_with_its_cells_outputs(server, tmp_path):
    notebook(tmp_path, "report.ipynb", "print(6 * 7)", "print('done')")
    task = run(server, tmp_path, "report.ipynb")
    assert task.status is TaskStatus.SUCCESS, task.logs()
    assert stdout_of(outputs(task, tmp_path) / "report_output.ipynb") == ["42\n", "done\n"]


def test_parameters_are_injected_after_the_parameters_cell(server, tmp_path):
    notebook(tmp_path, "p.ipynb", "print(n * 2, name, flags)", parameters="n = 1\nname = 'x'\nflags = []")
    task = run(server, tmp_path, "p.ipynb", parameters={"n": 21, "flags": {"a": True}})
    assert task.status is TaskStatus.SUCCESS, task.logs()
    assert "42 x {'a': True}" in task.logs()
    cells = stdout_of(outputs(task, tmp_path) / "p_output.ipynb")
    assert cells[-1] == "42 x {'a': True}\n"


def test_run_task_passes_parameters_and_prints_the_cells_output(server, tmp_path, capsys):
    notebook(tmp_path, "nb.ipynb", "print('hello', who)", parameters="who = 'nobody'")
    worker, success = taskyard.run_task("nb.ipynb", tmp_path, client=server.client, parameters={"who": "world"},
                                        execution_timeout="1m")
    assert success and "hello world" in capsys.readouterr().out


def test_parameters_of_a_notebook_without_a_parameters_cell_come_first(server, tmp_path):
    notebook(tmp_path, "plain.ipynb", "print('got', value)")
    task = run(server, tmp_path, "plain.ipynb", parameters={"value": "hello"})
    assert task.status is TaskStatus.SUCCESS, task.logs()
    assert "got hello" in task.logs()


def test_a_failing_cell_fails_the_task_with_its_traceback_and_keeps_the_partial_notebook(server, tmp_path):
    notebook(tmp_path, "bad.ipynb", "print('before')", "def boom():\n    raise SystemError('Simulated error')\nboom()",
             "print('never')")
    task = run(server, tmp_path, "bad.ipynb")
    assert task.status is TaskStatus.FAILED and task.exit_code == 1
    logs = task.logs()
    assert "before" in logs and "never" not in logs
    assert "SystemError: Simulated error" in logs and "Traceback" in logs and "boom()" in logs
    assert "\x1b[" not in logs  # the kernel's colors are taken out
    assert task.info.outputs is not None and task.info.outputs.partial
    executed = json.loads((outputs(task, tmp_path) / "bad_output.ipynb").read_text())
    errors = [out for cell in executed["cells"] for out in cell.get("outputs", ()) if out["output_type"] == "error"]
    assert [error["ename"] for error in errors] == ["SystemError"]


def test_a_cell_over_its_execution_timeout_fails_the_task_and_leaves_no_kernel(server, tmp_path):
    notebook(tmp_path, "slow.ipynb", "import time\ntime.sleep(600)")
    task = run(server, tmp_path, "slow.ipynb", execution_timeout=2)
    assert task.status is TaskStatus.FAILED, task.logs()
    assert "Cell execution timed out" in task.logs() or "CellTimeoutError" in task.logs()
    wait_for(lambda: not kernels_under(server.home), timeout=20)


def test_a_notebook_over_its_time_to_live_is_stopped_and_leaves_no_kernel(server, tmp_path):
    notebook(tmp_path, "hang.ipynb", "print('started', flush=True)\nimport time\ntime.sleep(600)")
    task = taskyard.submit("hang.ipynb", files_path=tmp_path, client=server.client, time_to_live=8)
    wait_for(lambda: kernels_under(server.home), timeout=60)
    assert task.wait(timeout=120) is TaskStatus.TASK_TIMED_OUT
    wait_for(lambda: not kernels_under(server.home), timeout=20)


def test_a_killed_notebook_task_leaves_no_kernel(server, tmp_path):
    notebook(tmp_path, "hang.ipynb", "import time\ntime.sleep(600)")
    task = taskyard.submit("hang.ipynb", files_path=tmp_path, client=server.client)
    wait_for(lambda: kernels_under(server.home), timeout=60)
    assert task.kill() is TaskStatus.KILLED
    wait_for(lambda: not kernels_under(server.home), timeout=20)


def kernels_under(home: Path) -> list[int]:
    """The ipykernel processes on this host started for this server's workers."""
    return [pid for pid in processes_in(home / "workers") if "ipykernel_launcher" in _cmdline(pid)]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


# -- refused at submit -------------------------------------------------------------------------------


def test_a_file_that_is_not_a_notebook_is_refused_before_upload(server, tmp_path):
    write(tmp_path, "broken.ipynb", "{not json")
    write(tmp_path, "other.ipynb", json.dumps({"hello": 1}))
    with pytest.raises(InvalidInput, match="broken.ipynb is not a notebook: it is not valid JSON"):
        taskyard.submit("broken.ipynb", files_path=tmp_path, client=server.client)
    with pytest.raises(InvalidInput, match="other.ipynb is not a notebook: it has no list of cells"):
        taskyard.submit("other.ipynb", files_path=tmp_path, client=server.client)


def test_a_parameter_name_that_is_not_an_identifier_is_refused(server, tmp_path):
    notebook(tmp_path, "nb.ipynb", "print(1)")
    with pytest.raises(InvalidInput, match="parameter name 'not-a-name' must be a Python identifier"):
        taskyard.submit("nb.ipynb", files_path=tmp_path, client=server.client, parameters={"not-a-name": 1})
    body = {"file_name": "nb.ipynb", "parameters": {"1x": 1}, "bundle_sha256": "0" * 64, "bundle_size": 1}
    response = server.client._http.post("/tasks", json=body)
    assert response.status_code == 422 and "must be a Python identifier" in response.text


def test_notebook_options_on_a_script_task_are_refused(server, tmp_path):
    body = {"file_name": "task.py", "parameters": {"a": 1}, "bundle_sha256": "0" * 64, "bundle_size": 1}
    response = server.client._http.post("/tasks", json=body)
    assert response.status_code == 422
    assert "apply to notebook tasks (.ipynb, or .py with as_notebook) only" in response.text


# -- taskyard.notebooks inside a task -----------------------------------------------------------------


TASK_WITH_NOTEBOOK = """import taskyard as prt

prt.notebooks.execute_notebook(
    "task_with_notebook",
    raise_on_failure=True,
)
"""


def test_the_seed_task_with_notebook_fails_with_the_notebooks_error(server, tmp_path):
    notebook(tmp_path, "task_with_notebook.ipynb", 'print("This task runs inside a notebook.")',
             'raise SystemError("Simulated error")')
    write(tmp_path, "task_with_notebook.py", TASK_WITH_NOTEBOOK)
    task = run(server, tmp_path, "task_with_notebook.py")
    assert task.status is TaskStatus.FAILED, task.logs()
    logs = task.logs()
    assert "This task runs inside a notebook." in logs and "SystemError: Simulated error" in logs
    assert "PapermillExecutionError" in logs  # raise_on_failure: the task's own traceback ends with it
    assert (outputs(task, tmp_path) / "task_with_notebook_output.ipynb").is_file()


HISTORY = """import taskyard as prt

ok = prt.notebooks.execute_notebooks("books", parameters={"n": 2})
# one write per line: the kernels' stderr may come between two writes of one print
print(f"all ok: {ok}")
print(f"succeeded: {prt.notebooks.successful_notebooks}")
print(f"failed: {prt.notebooks.failed_notebooks}")
try:
    prt.notebooks.validate_history()
except prt.notebooks.NotebookFailed as exc:
    print(f"history: {exc}")
"""


def test_execute_notebooks_keeps_a_history_and_validate_history_raises(server, tmp_path):
    notebook(tmp_path / "books", "a.ipynb", "print('a', n)", parameters="n = 0")
    notebook(tmp_path / "books" / "sub", "b.ipynb", "raise ValueError(n)", parameters="n = 0")
    write(tmp_path, "history.py", HISTORY)
    task = run(server, tmp_path, "history.py")
    assert task.status is TaskStatus.SUCCESS, task.logs()
    logs = task.logs()
    assert "all ok: False" in logs and "succeeded: ['books/a.ipynb']" in logs
    assert "failed: ['books/sub/b.ipynb']" in logs and "history: 1 notebook(s) failed: books/sub/b.ipynb" in logs
    assert "ValueError: 2" in logs
    assert (outputs(task, tmp_path) / "a_output.ipynb").is_file()


# -- a jupytext percent-format script run as a notebook ------------------------------------------------

PERCENT_SCRIPT = """# %% tags=["parameters"]
n = 1

# %%
print("first cell", n * 2)

# %%
print("second cell")
"""


def test_a_percent_format_script_runs_as_a_notebook_with_its_parameters_and_outputs(server, tmp_path):
    pytest.importorskip("jupytext")
    write(tmp_path, "cells.py", PERCENT_SCRIPT)
    task = run(server, tmp_path, "cells.py", as_notebook=True, parameters={"n": 21})
    assert task.status is TaskStatus.SUCCESS, task.logs()
    logs = task.logs()
    assert "first cell 42" in logs and logs.index("first cell") < logs.index("second cell")
    assert stdout_of(outputs(task, tmp_path) / "cells_output.ipynb")[-2:] == ["first cell 42\n", "second cell\n"]


def test_a_percent_format_script_with_a_failing_cell_fails_with_its_traceback(server, tmp_path):
    pytest.importorskip("jupytext")
    write(tmp_path, "bad.py", "# %%\nprint('before')\n\n# %%\nraise KeyError('missing')\n\n# %%\nprint('never')\n")
    task = run(server, tmp_path, "bad.py", as_notebook=True)
    assert task.status is TaskStatus.FAILED and task.exit_code == 1
    logs = task.logs()
    assert "before" in logs and "never" not in logs and "KeyError: 'missing'" in logs and "Traceback" in logs
    assert (outputs(task, tmp_path) / "bad_output.ipynb").is_file()


def test_run_task_as_notebook_prints_each_cells_output(server, tmp_path, capsys):
    pytest.importorskip("jupytext")
    write(tmp_path, "cells.py", PERCENT_SCRIPT)
    worker, success = taskyard.run_task("cells.py", tmp_path, client=server.client, as_notebook=True)
    assert success and "first cell 2" in capsys.readouterr().out


def test_as_notebook_is_for_py_scripts_only(server, tmp_path):
    write(tmp_path, "job.sh", "echo hi\n")
    with pytest.raises(InvalidInput, match="as_notebook runs a .py script as a notebook"):
        taskyard.submit("job.sh", files_path=tmp_path, client=server.client, as_notebook=True)
    body = {"file_name": "job.sh", "as_notebook": True, "bundle_sha256": "0" * 64, "bundle_size": 1}
    response = server.client._http.post("/tasks", json=body)
    assert response.status_code == 422 and "as_notebook applies to a .py script" in response.text
