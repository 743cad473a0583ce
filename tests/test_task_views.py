"""The Inductiva views of a task: list_files / tail_files in the SDK, and ``taskyard tasks info | list-files |
tail | top`` at a terminal, on a real control plane."""

from __future__ import annotations

import io
import time

import pytest

import taskyard
from taskyard import TaskStatus
from taskyard.errors import NotFound

from support import invoke, wait_for, write

MAKER = (
    "import os, pathlib, sys\nout = pathlib.Path(os.environ['TASKYARD_OUTPUT_DIR'])\n"
    "(out / 'table.csv').write_text(''.join(f'row {i}\\n' for i in range(50)))\n"
    "for i in range(30):\n    print('out', i)\n"
    "print('oops', file=sys.stderr)\n"
)
TICKER = "import time\nfor i in range(8):\n    print('tick', i, flush=True)\n    time.sleep(0.5)\n"


def submit(server, tmp_path, name: str, code: str) -> taskyard.Task:
    write(tmp_path, name, code)
    return taskyard.submit(name, tmp_path, client=server.client)


def test_list_files_and_tail_files_of_an_ended_task(server, tmp_path):
    task = submit(server, tmp_path, "make.py", MAKER)
    assert task.list_files() == ["stdout.txt", "stderr.txt"]  # no outputs before it ends
    assert task.wait(timeout=30) is TaskStatus.SUCCESS
    assert task.list_files() == ["stdout.txt", "stderr.txt", "table.csv"]
    out = io.StringIO()
    task.tail_files(["table.csv"], lines=2, file=out)
    assert out.getvalue() == "row 48\nrow 49\n"
    out = io.StringIO()
    task.tail_files(["stdout.txt", "stderr.txt"], lines=1, file=out)
    assert out.getvalue() == "==> stdout.txt <==\nout 29\n==> stderr.txt <==\noops\n"
    with pytest.raises(NotFound, match="nope.txt"):
        task.tail_files(["nope.txt"], file=io.StringIO())


def test_tail_files_follows_the_output_while_the_task_runs(server, tmp_path):
    task = submit(server, tmp_path, "tick.py", TICKER)
    wait_for(lambda: "tick 1" in task.logs(), timeout=30)
    out = io.StringIO()
    task.tail_files(["stdout.txt"], lines=1, follow=True, file=out)  # returns once the task has ended
    assert task.get_status() is TaskStatus.SUCCESS
    text = out.getvalue()
    assert text.endswith("tick 6\ntick 7\n") and "tick 0" not in text


def test_cli_info_list_files_and_tail(cli, server, tmp_path):
    task = submit(server, tmp_path, "make.py", MAKER)
    assert task.wait(timeout=30) is TaskStatus.SUCCESS
    task.set_metadata({"experiment": "e1"})
    shown = invoke(cli, "tasks", "info", task.id)
    assert shown.exit_code == 0, shown.output
    assert f"Task:             {task.id}" in shown.stdout and "Status:           Success" in shown.stdout
    assert "experiment" in shown.stdout and "e1" in shown.stdout
    listed = invoke(cli, "tasks", "list-files", task.id)
    assert listed.exit_code == 0, listed.output
    rows = [line.split() for line in listed.stdout.splitlines()[2:]]
    assert rows == [["stdout.txt", "-", "log"], ["stderr.txt", "-", "log"], ["table.csv", "340", "output"]]
    tailed = invoke(cli, "tasks", "tail", task.id, "table.csv", "-n", "3")
    assert (tailed.exit_code, tailed.stdout) == (0, "row 47\nrow 48\nrow 49\n"), tailed.output
    assert invoke(cli, "tasks", "tail", task.id, "nope.txt").exit_code == 5
    assert invoke(cli, "tasks", "info", "no-such-task").exit_code == 5


def test_cli_tail_follow_exits_with_the_tasks_code(cli, server, tmp_path):
    code = "import time\nprint('up', flush=True)\ntime.sleep(1)\nraise SystemExit(4)\n"
    task = submit(server, tmp_path, "fail.py", code)
    result = invoke(cli, "tasks", "tail", task.id, "stdout.txt", "-f")
    assert (result.exit_code, result.stdout) == (1, "up\n"), result.output


def test_cli_top_shows_the_tasks_not_ended(cli, server, tmp_path):
    running = submit(server, tmp_path, "tick.py", TICKER)
    wait_for(lambda: "tick" in running.logs(), timeout=30)
    done = submit(server, tmp_path, "quick.py", "print('quick')\n")
    done.wait(timeout=30)
    started = time.monotonic()
    result = invoke(cli, "tasks", "top", "--count", "2", "--interval", "0.3")
    assert result.exit_code == 0, result.output
    assert time.monotonic() - started >= 0.3  # it refreshed once
    assert running.id in result.stdout and "In Progress" in result.stdout and "tick.py" in result.stdout
    assert done.id not in result.stdout
    assert running.wait(timeout=30) is TaskStatus.SUCCESS
