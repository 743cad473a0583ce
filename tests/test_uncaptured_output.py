"""``capture_task_output=False``: the output stays out of the task's log but is kept in its worker's own log,
secrets masked, while the worker lives."""

from __future__ import annotations

import secrets

from typer.testing import CliRunner

import taskyard
from taskyard import TaskStatus, WorkerConfig
from taskyard.agent.masking import MASK
from taskyard.cli import app

from support import default_client_of, wait_for, write

# One write per line: the two streams are separate pipes, read as they come, so the pieces of a
# print() to stdout and of one to stderr may interleave.
CODE = """import os, sys
sys.stdout.write("to stdout, not captured\\n")
sys.stderr.write("to stderr, not captured\\n")
sys.stdout.write("the secret is " + os.environ["UNCAPTURED_SECRET"] + "\\n")
"""


def test_uncaptured_output_is_in_the_worker_log_only_and_masked(server, tmp_path, monkeypatch, capsys):
    secret, value = f"UNCAPTURED_{secrets.token_hex(3)}", "v-" + secrets.token_hex(8)
    taskyard.vault.create_or_update_secret(secret, value, client=server.client)
    write(tmp_path, "quiet.py", CODE)
    config = WorkerConfig(personal_secrets=[f"{secret}:UNCAPTURED_SECRET"])
    worker, success = taskyard.run_task(
        "quiet.py", tmp_path, config, terminate_on_completion=False, capture_task_output=False, client=server.client
    )
    assert success is True
    printed = capsys.readouterr()
    assert "not captured" not in printed.out + printed.err  # not streamed
    task = taskyard.tasks.get_tasks(1, client=server.client)[0]
    assert "not captured" not in task.logs()  # not in the task's log
    logs = worker.get_logs()
    assert "to stdout, not captured" in logs and "to stderr, not captured" in logs  # the streams interleave
    assert f"the secret is {MASK}" in logs and value not in logs
    local_copy = (server.home / "workers" / worker.name / "task_output.log").read_text()
    assert "to stdout, not captured" in local_copy and value not in local_copy
    with default_client_of(server, monkeypatch):
        shown = CliRunner().invoke(app, ["workers", "logs", worker.name])
    assert shown.exit_code == 0 and "to stdout, not captured" in shown.stdout
    own_log = server.home / "blobs" / "workers" / worker.name / "output.log"
    assert own_log.is_file() and value not in own_log.read_text()  # masked at rest too
    worker.terminate()
    wait_for(lambda: worker.status.is_finished(), timeout=30)
    wait_for(lambda: not own_log.exists(), timeout=10)  # dropped once the worker has ended
    assert "not captured" not in worker.get_logs()  # kept while the worker lives only


def test_a_second_uncaptured_task_on_a_kept_worker_adds_to_its_log(server, tmp_path):
    write(tmp_path, "one.py", "print('first run')\n")
    write(tmp_path, "two.py", "print('second run')\n")
    worker, success = taskyard.run_task(
        "one.py", tmp_path, terminate_on_completion=False, capture_task_output=False, client=server.client
    )
    assert success and worker.run_task("two.py", tmp_path, capture_task_output=False)[1]
    assert worker.get_logs().endswith("first run\nsecond run\n")
    assert taskyard.tasks.get_tasks(1, client=server.client)[0].get_status() is TaskStatus.SUCCESS
    worker.terminate()


def test_run_no_capture_says_where_the_output_went(server, tmp_path, monkeypatch):
    write(tmp_path, "quiet.py", "print('kept in the worker log')\n")
    with default_client_of(server, monkeypatch):
        result = CliRunner().invoke(app, ["run", "quiet.py", "--files", str(tmp_path), "--no-capture", "--keep-worker"])
    assert result.exit_code == 0 and result.stdout == "", result.output
    name = result.stderr.split("taskyard workers logs ", 1)[1].split(",", 1)[0]
    worker = taskyard.Worker(name, client=server.client)
    assert "kept in the worker log" in worker.get_logs()
    worker.terminate()
