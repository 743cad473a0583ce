"""The ``taskyard`` command end to end: a real control plane, real workers, no mocks."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
from typer.testing import Result

from taskyard.client import reset_default_client
from taskyard.status import TaskStatus, WorkerStatus

from support import EXAMPLES, invoke, wait_for, write

SLEEPER = "import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n"


def unique(name: str) -> str:
    return f"cli-{name}-{time.monotonic_ns()}"


def assert_clean_error(result: Result, code: int) -> None:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output


# -- run ------------------------------------------------------------------------------------------


def test_run_streams_output_and_exits_0(cli):
    result = invoke(cli, "run", "task_1.py", "--files", EXAMPLES)
    assert result.exit_code == 0, result.output
    assert result.stdout == "Hello from simple task 1\n"
    summary = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"task \S+: Success, ran \S+, worker tw-\w+", summary), summary


def test_run_of_a_failing_task_exits_1_with_its_traceback_on_stderr(cli):
    result = invoke(cli, "run", "task_with_error.py", "--files", EXAMPLES)
    assert result.exit_code == 1, result.output
    assert "Starting task.." in result.stdout
    assert "Traceback (most recent call last)" in result.stderr
    assert "NotImplementedError: Still baking.." in result.stderr
    assert "Failed (exit code 1)" in result.stderr


def test_run_passes_env_variables_and_worker_config(cli):
    result = invoke(
        cli, "run", "task.py", "--files", EXAMPLES / "tasks", "--size", "x-small", "--image", "python",
        "-e", "MY_FIRST_PARAM=VALUE1", "--env", "MY_SECOND_PARAM=12=3",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "First Param: VALUE1\nSecond Param: 12=3\n"


def test_run_passes_notebook_parameters_read_as_json_when_they_parse(cli, tmp_path):
    cell = {"cell_type": "code", "execution_count": None, "id": "c", "metadata": {}, "outputs": [],
            "source": "print(n + 1, repr(name), flags)"}
    write(tmp_path, "nb.ipynb", json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    result = invoke(cli, "run", "nb.ipynb", "--files", tmp_path, "-p", "n=41", "-p", "name=abc",
                    "--parameter", 'flags=["x"]', "--cell-timeout", "60")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "42 'abc' ['x']"
    assert_clean_error(invoke(cli, "run", "nb.ipynb", "--files", tmp_path, "-p", "n"), 2)


def test_run_as_notebook_runs_a_percent_format_script_cell_by_cell(cli, tmp_path):
    pytest.importorskip("jupytext")
    write(tmp_path, "cells.py", "# %% tags=['parameters']\nn = 0\n\n# %%\nprint('cell', n + 1)\n")
    result = invoke(cli, "run", "cells.py", "--files", tmp_path, "--as-notebook", "-p", "n=41")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "cell 42"


def test_run_with_requirements_read_here_and_an_unknown_venv_refused(cli, tmp_path):
    write(tmp_path / "project", "task.py", "import six\nprint(six.__version__)\n")
    requirements = write(tmp_path, "requirements.txt", "six==1.7.3  # outside the task folder: read here\n")
    result = invoke(cli, "run", "task.py", "--files", tmp_path / "project", "--requirements", requirements)
    assert result.exit_code == 0, result.output
    assert result.stdout == "1.7.3\n"
    assert "[setup] building a Python environment" in result.stderr
    refused = invoke(cli, "run", "task.py", "--files", tmp_path / "project", "--venv", "nope")
    assert_clean_error(refused, 2)
    assert "no Python virtual environment 'nope'" in refused.output


def test_run_without_capture_prints_nothing_of_the_task(cli):
    result = invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "--no-capture")
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert ": Success" in result.stderr


def test_detach_then_show_kill_and_logs(cli, server, tmp_path):
    write(tmp_path, "sleeper.py", SLEEPER)
    detached = invoke(cli, "run", "sleeper.py", "--files", tmp_path, "--detach")
    assert detached.exit_code == 0, detached.output
    task_id = detached.stdout.strip()
    assert re.fullmatch(r"\S+", task_id), detached.stdout

    shown = invoke(cli, "tasks", "show", task_id, "--json")
    assert shown.exit_code == 0, shown.output
    info = json.loads(shown.stdout)
    assert info["id"] == task_id and info["file_name"] == "sleeper.py"
    assert not TaskStatus(info["status"]).is_terminal()

    wait_for(lambda: "sleeping" in server.client.tail(task_id, 1000), timeout=30)
    so_far = invoke(cli, "tasks", "logs", task_id)
    assert (so_far.exit_code, so_far.stdout) == (0, "sleeping\n"), so_far.output

    killed = invoke(cli, "tasks", "kill", task_id)
    assert (killed.exit_code, killed.stdout) == (0, "Killed\n"), killed.output

    followed = invoke(cli, "tasks", "logs", task_id, "-f")  # the task has ended: prints all and returns
    assert followed.exit_code == 3, followed.output  # the code of its ending: Killed
    assert followed.stdout == "sleeping\n"

    table = invoke(cli, "tasks", "show", task_id)
    assert table.exit_code == 0, table.output
    assert "sleeper.py" in table.stdout
    for alias in ("In Queue", "In Progress", "Pending Kill", "Killed"):
        assert alias in table.stdout


def test_ctrl_c_while_following_leaves_the_task_running(server, tmp_path):
    write(tmp_path, "sleeper.py", SLEEPER)
    task_id, out = unique("interrupted"), tmp_path / "out.txt"
    env = {**os.environ, "TASKYARD_URL": server.url, "TASKYARD_TOKEN": server.token}
    command = [sys.executable, "-m", "taskyard", "run", "sleeper.py", "--files", str(tmp_path), "--task-id", task_id]
    with open(out, "w") as stdout:
        process = subprocess.Popen(  # with Ctrl-C's default action, as from a shell: a test run may ignore SIGINT
            command, stdout=stdout, stderr=subprocess.PIPE, text=True, env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        try:
            wait_for(lambda: "sleeping" in out.read_text(), timeout=30)  # the command is following the task
            process.send_signal(signal.SIGINT)
            _, err = process.communicate(timeout=30)
        finally:
            process.kill()
    assert process.returncode == 130, err
    assert f"the task goes on; stop it with: taskyard tasks kill {task_id}" in err
    assert "Traceback" not in err
    assert server.client.task(task_id).status is TaskStatus.IN_PROGRESS
    server.client.kill(task_id)


def test_kept_worker_is_listed_and_terminated(cli, server):
    result = invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "--keep-worker")
    assert result.exit_code == 0, result.output
    hint = re.search(r"stop it with: taskyard workers terminate (tw-\w+)", result.stderr)
    assert hint, result.stderr
    name = hint.group(1)

    listed = invoke(cli, "workers", "list", "--json")
    assert listed.exit_code == 0, listed.output
    worker = next(w for w in json.loads(listed.stdout) if w["name"] == name)
    assert worker["status"] == "Running" and worker["keep"] is True
    table = invoke(cli, "workers", "list")
    assert name in table.stdout and "NAME" in table.stdout

    logs = invoke(cli, "workers", "logs", name)
    assert (logs.exit_code, logs.stdout) == (0, "Hello from simple task 1\n"), logs.output

    terminated = invoke(cli, "workers", "terminate", name)
    assert terminated.exit_code == 0, terminated.output
    assert name in terminated.stdout
    wait_for(lambda: server.client.worker(name).status is WorkerStatus.TERMINATED, timeout=30)
    assert name not in invoke(cli, "workers", "list").stdout
    assert name in invoke(cli, "workers", "list", "--all").stdout


# -- tasks ----------------------------------------------------------------------------------------


def test_tasks_list_filters_by_code_or_alias(cli):
    ok, bad = unique("ok"), unique("bad")
    assert invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "--task-id", ok).exit_code == 0
    assert invoke(cli, "run", "task_with_error.py", "--files", EXAMPLES, "--task-id", bad).exit_code == 1

    failed = invoke(cli, "tasks", "list", "--status", "failed", "--limit", 500, "--json")
    assert failed.exit_code == 0, failed.output
    tasks = json.loads(failed.stdout)
    assert bad in [t["id"] for t in tasks] and ok not in [t["id"] for t in tasks]
    assert {t["status"] for t in tasks} == {"failed"}

    by_alias = invoke(cli, "tasks", "list", "--status", "Success", "--limit", 500)
    assert by_alias.exit_code == 0, by_alias.output
    assert ok in by_alias.stdout and bad not in by_alias.stdout
    assert all(word in by_alias.stdout for word in ("ID", "FILE", "STATUS", "WORKER", "CREATED", "DURATION"))

    newest = invoke(cli, "tasks", "list", "--limit", 2, "--json")
    assert [t["id"] for t in json.loads(newest.stdout)] == [bad, ok]


def test_tasks_list_refuses_an_unknown_status(cli):
    result = invoke(cli, "tasks", "list", "--status", "sleepy")
    assert_clean_error(result, 2)
    assert "unknown status 'sleepy'" in result.stderr


def test_tasks_download_complete_and_partial_outputs(cli, tmp_path):
    src, done, half = tmp_path / "src", unique("outputs"), unique("partial")
    out = "import os, pathlib\nout = pathlib.Path(os.environ['TASKYARD_OUTPUT_DIR'])\n"
    write(src, "make.py", out + "(out / 'result.txt').write_text('42')\n")
    write(src, "half.py", out + "(out / 'half.txt').write_text('h')\nraise SystemExit(2)\n")
    assert invoke(cli, "run", "make.py", "--files", src, "--task-id", done).exit_code == 0
    assert invoke(cli, "run", "half.py", "--files", src, "--task-id", half).exit_code == 1

    got = invoke(cli, "tasks", "download", done, "--dir", tmp_path / "got")
    assert got.exit_code == 0, got.output
    assert (tmp_path / "got" / "result.txt").read_text() == "42"
    assert got.stdout == f"outputs of task {done} saved to {(tmp_path / 'got').resolve()}\n"

    partial = invoke(cli, "tasks", "download", half, "--dir", tmp_path / "half")
    assert partial.exit_code == 0, partial.output
    assert (tmp_path / "half" / "partial" / "half.txt").read_text() == "h"
    assert partial.stdout.startswith(f"partial outputs of task {half}")


def test_an_unknown_task_is_a_clean_error(cli):
    for command in (["show"], ["logs"], ["kill"], ["download"]):
        result = invoke(cli, "tasks", *command, "no-such-task")
        assert_clean_error(result, 5)
        assert result.stderr == "error: no task 'no-such-task'\n"


def test_killing_a_finished_task_is_refused(cli):
    task_id = unique("finished")
    assert invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "--task-id", task_id).exit_code == 0
    result = invoke(cli, "tasks", "kill", task_id)
    assert_clean_error(result, 2)
    assert result.stderr.startswith("error: ") and "already ended" in result.stderr


# -- bad input ------------------------------------------------------------------------------------


def test_env_without_equals_is_a_usage_error_naming_the_option(cli):
    result = invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "-e", "NOVALUE")
    assert_clean_error(result, 2)
    assert "'-e' / '--env'" in result.stderr and "'NOVALUE' is not KEY=VALUE" in result.stderr


def test_bad_worker_options_give_one_clean_line(cli):
    result = invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "--size", "Huge")
    assert_clean_error(result, 2)
    assert result.stderr == (
        "error: unknown worker_size 'Huge'; valid sizes: X-Small, Small, Medium, Large, X-Large "
        "(field: worker_config.worker_size)\n"
    )
    result = invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "--size", "Huge size")
    assert_clean_error(result, 2)
    assert result.stderr.startswith("error: worker_size 'Huge size' is not a size name; use 1-32 letters")
    result = invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "-e", "BAD-NAME=1")
    assert_clean_error(result, 2)
    assert result.stderr.startswith("error: invalid env variable name 'BAD-NAME'")
    assert result.stderr.count("\n") == 1


def test_input_the_server_refuses_exits_2(cli, tmp_path):
    write(tmp_path, "notes.txt", "")
    result = invoke(cli, "run", "notes.txt", "--files", tmp_path)
    assert_clean_error(result, 2)
    assert "unsupported extension" in result.stderr and "(field: file_name)" in result.stderr
    result = invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "--image", "nope")
    assert_clean_error(result, 2)
    assert "valid images" in result.stderr


def test_an_unreachable_server_says_what_to_do(cli, monkeypatch):
    monkeypatch.setenv("TASKYARD_URL", "http://127.0.0.1:9")
    reset_default_client()
    result = invoke(cli, "tasks", "list")
    assert_clean_error(result, 4)
    assert result.stderr.startswith("error: cannot reach the taskyard server at http://127.0.0.1:9")
    assert "taskyard server status" in result.stderr


# -- users ----------------------------------------------------------------------------------------


def test_users_add_prints_a_token_that_works(cli, monkeypatch):
    name = unique("user")
    added = invoke(cli, "users", "add", name)
    assert added.exit_code == 0, added.output
    token = added.stdout.strip()
    assert token.startswith("ty_") and "export TASKYARD_URL=" in added.stderr and token in added.stderr

    listed = invoke(cli, "users", "list")
    assert listed.exit_code == 0 and name in listed.stdout

    monkeypatch.setenv("TASKYARD_TOKEN", token)
    reset_default_client()
    me = invoke(cli, "users", "whoami")
    assert me.exit_code == 0, me.output
    assert me.stdout.startswith(f"{name} on http://")
    refused = invoke(cli, "users", "list")
    assert_clean_error(refused, 4)
    assert "only an admin" in refused.stderr


def test_users_rotate_token_and_remove(cli, server, monkeypatch):
    name = unique("user")
    old = invoke(cli, "users", "add", name).stdout.strip()
    monkeypatch.setenv("TASKYARD_TOKEN", old)
    reset_default_client()
    rotated = invoke(cli, "users", "rotate-token", "--expires", "30d")  # one's own
    assert rotated.exit_code == 0, rotated.output
    new = rotated.stdout.strip()
    assert new.startswith("ty_") and new != old and "old one no longer works" in rotated.stderr
    assert_clean_error(invoke(cli, "users", "whoami"), 4)  # the old token is refused
    monkeypatch.setenv("TASKYARD_TOKEN", new)
    reset_default_client()
    assert invoke(cli, "users", "whoami").stdout.startswith(name)
    monkeypatch.setenv("TASKYARD_TOKEN", server.token)
    reset_default_client()
    removed = invoke(cli, "users", "remove", name)
    assert removed.exit_code == 0, removed.output
    assert name not in invoke(cli, "users", "list").stdout


def test_a_wrong_token_is_a_clean_error_with_a_hint(cli, monkeypatch):
    monkeypatch.setenv("TASKYARD_TOKEN", "ty_wrong")
    reset_default_client()
    result = invoke(cli, "users", "whoami")
    assert_clean_error(result, 4)
    assert "TASKYARD_TOKEN" in result.stderr


# -- help -----------------------------------------------------------------------------------------


def test_root_help_lists_every_command_with_a_line(cli):
    for args in ([], ["--help"]):
        result = invoke(cli, *args)
        assert "Run script tasks on isolated, on-demand workers." in result.output
        for line in (
            "run      Run a script task on a fresh worker and stream its output.",
            "sizes    List the worker sizes the server offers, and which fit on its host.",
            "tasks    List, inspect, follow, kill and download tasks.",
            "workers  List workers, terminate them, read their logs, get into kept ones.",
            "users    Add, list and remove users, change tokens, and see who you are.",
            "server   Run the control plane, or manage the embedded one.",
        ):
            assert line in result.output


@pytest.mark.parametrize(
    "group, commands",
    [
        ("tasks", ["list", "show", "callback", "signing-secret", "logs", "kill", "download", "info", "list-files",
                   "tail", "top"]),
        ("folders", ["push", "list"]),
        ("workers", ["list", "terminate", "logs", "exec", "shell"]),
        ("pools", ["create", "list", "delete"]),
        ("users", ["add", "list", "whoami", "remove", "rotate-token"]),
        ("server", ["status", "stop"]),
    ],
)
def test_group_help_lists_its_commands(cli, group, commands):
    result = invoke(cli, group, "--help")
    assert result.exit_code == 0, result.output
    listed = re.findall(r"^│ (\w[\w-]*) ", result.stdout, flags=re.MULTILINE)
    assert listed == commands


def test_run_help_documents_exit_codes_and_sizes(cli):
    result = invoke(cli, "run", "--help")
    assert result.exit_code == 0
    for code in ("0    Success", "1    Failed", "2    bad usage", "3    any other end", "130  Ctrl+C"):
        assert code in result.stdout
    text = " ".join(result.stdout.replace("│", " ").split())
    assert "Worker size, e.g. X-Small or Large; `taskyard sizes` lists the server's." in text


# -- time limits and pools -------------------------------------------------------------------------


def test_run_with_a_ttl_times_out_and_exits_3(cli, tmp_path):
    write(tmp_path, "slow.py", SLEEPER)
    result = invoke(cli, "run", "slow.py", "--files", tmp_path, "--ttl", "1s")
    assert result.exit_code == 3, result.output
    assert "Task Timed Out" in result.stderr and "time_to_live of 1 s" in result.stderr


def test_a_bad_ttl_is_an_input_error(cli):
    result = invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "--ttl", "soon")
    assert_clean_error(result, 2)
    assert "not a duration" in result.stderr


def test_pools_create_list_run_and_delete(cli):
    name = unique("pool")
    created = invoke(cli, "pools", "create", name, "--max-workers", "1", "--ttl", "1h", "--size", "small")
    assert created.exit_code == 0, created.output
    listed = invoke(cli, "pools", "list", "--json")
    pools = {pool["name"]: pool for pool in json.loads(listed.stdout)}
    assert pools[name]["max_workers"] == 1 and pools[name]["time_to_live"] == 3600
    assert pools[name]["worker_config"]["worker_size"] == "Small" and "default" in pools
    ran = invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "--pool", name)
    assert ran.exit_code == 0 and ran.stdout == "Hello from simple task 1\n"
    assert invoke(cli, "pools", "delete", name).exit_code == 0
    missing = invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "--pool", name)
    assert_clean_error(missing, 2)
    assert f"no pool {name!r}" in missing.stderr
