"""Every ``taskyard`` command exits by one table (taskyard.cli.exit_codes): each code, from a real command."""

from __future__ import annotations

import os
import time

from taskyard.cli.exit_codes import ExitCode, for_error, for_status
from taskyard.client import reset_default_client
from taskyard.errors import Conflict, Forbidden, NotFound, TaskyardError, TooLarge
from taskyard.status import TaskStatus

from support import EXAMPLES, Server, default_client_of, invoke, wait_for, write


def test_the_table_is_in_the_root_help(cli):
    text = invoke(cli, "--help").stdout
    for line in ("0    success", "1    the task ended Failed", "2    bad usage or input", "3    the task ended any",
                 "4    the server could not be reached", "5    not found", "130  Ctrl+C"):  # fmt: skip
        assert line in text, text


def test_0_success_and_1_failed(cli):
    assert invoke(cli, "run", "task_1.py", "--files", EXAMPLES).exit_code == ExitCode.SUCCESS == 0
    failed = invoke(cli, "run", "task_with_error.py", "--files", EXAMPLES)
    assert failed.exit_code == ExitCode.FAILED == 1, failed.output


def test_2_bad_input_and_a_folder_over_the_upload_limit(cli, tmp_path, monkeypatch):
    assert invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "-e", "NOVALUE").exit_code == 2
    assert invoke(cli, "tasks", "list", "--status", "Sleeping").exit_code == 2
    write(tmp_path / "big", "big.py", "print('big')\n")
    (tmp_path / "big" / "data.bin").write_bytes(os.urandom(300_000))
    small = Server(tmp_path / "home", TASKYARD_MAX_UPLOAD_MB="0.1").start()
    try:
        with default_client_of(small, monkeypatch):
            result = invoke(cli, "run", "big.py", "--files", tmp_path / "big")
    finally:
        small.stop()
    assert result.exit_code == ExitCode.BAD_INPUT == 2, result.output
    assert "too large to upload" in result.stderr


def test_3_any_other_ending_and_tasks_logs_follow_exits_with_the_tasks_code(cli, server, tmp_path):
    write(tmp_path, "sleeper.py", "import time\nprint('up', flush=True)\ntime.sleep(60)\n")
    task_id = invoke(cli, "run", "sleeper.py", "--files", tmp_path, "--detach").stdout.strip()
    wait_for(lambda: "up" in server.client.tail(task_id, 100), timeout=30)
    assert invoke(cli, "tasks", "kill", task_id).exit_code == 0  # the kill itself succeeded
    followed = invoke(cli, "tasks", "logs", task_id, "-f")
    assert (followed.exit_code, followed.stdout) == (ExitCode.OTHER_END, "up\n"), followed.output
    done = invoke(cli, "run", "task_1.py", "--files", EXAMPLES, "--detach").stdout.strip()
    server.client.wait(done, timeout=30)
    assert invoke(cli, "tasks", "logs", done, "-f").exit_code == 0
    assert invoke(cli, "tasks", "logs", task_id).exit_code == 0  # without -f: printing is the command's success


def test_4_unreachable_server_or_refused_token(cli, monkeypatch):
    monkeypatch.setenv("TASKYARD_TOKEN", "ty_wrong")
    reset_default_client()
    assert invoke(cli, "tasks", "list").exit_code == ExitCode.UNREACHABLE == 4
    monkeypatch.setenv("TASKYARD_URL", "http://127.0.0.1:9")
    reset_default_client()
    assert invoke(cli, "workers", "list").exit_code == 4


def test_5_not_found(cli):
    for args in (["tasks", "show", "nope"], ["workers", "logs", "nope"], ["pools", "delete", f"nope-{time.time_ns()}"]):
        result = invoke(cli, *args)
        assert result.exit_code == ExitCode.NOT_FOUND == 5, (args, result.output)


def test_every_error_class_has_its_code():
    assert for_error(NotFound("x")) == 5 and for_error(TooLarge("x")) == 2 and for_error(Conflict("x")) == 2
    assert for_error(Forbidden("x")) == 4 and for_error(TaskyardError("x")) == 1
    assert [for_status(s) for s in (TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.KILLED)] == [0, 1, 3]
