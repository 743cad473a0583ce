"""The SDK end to end: a real control plane, real workers, the seed examples."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import taskyard
from taskyard import TaskStatus, WorkerConfig
from taskyard.errors import Conflict, InvalidInput, NotFound, TooLarge

from support import EXAMPLES, Server, wait_for, write


def test_seed_python_task_prints_live_and_terminates_its_worker(sdk_env, capsys):
    worker, success = taskyard.run_task(file_name="task_1.py", files_path=EXAMPLES)
    assert success is True
    assert "Hello from simple task 1" in capsys.readouterr().out
    wait_for(lambda: worker.status is taskyard.WorkerStatus.TERMINATED)


def test_seed_shell_task(sdk_env, capsys):
    worker, success = taskyard.run_task(file_name="task_2.sh", files_path=EXAMPLES)
    assert success is True
    assert "Hello from simple task 2" in capsys.readouterr().out


def test_failed_task_keeps_worker_for_inspection(sdk_env, capsys):
    config = WorkerConfig(worker_image="practicus", worker_size="X-Small")
    worker, success = taskyard.run_task(
        file_name="task_with_error.py", files_path=EXAMPLES, worker_config=config, terminate_on_completion=False
    )
    assert success is False
    err = capsys.readouterr().err
    assert "NotImplementedError: Still baking.." in err
    assert worker.status is taskyard.WorkerStatus.RUNNING
    assert (worker.size, worker.image) == ("X-Small", "practicus")
    assert worker.creation_time.tzinfo is not None
    logs = worker.get_logs(log_size_mb=1)
    assert "Starting task.." in logs and "Still baking.." in logs
    worker.terminate()
    wait_for(lambda: worker.status is taskyard.WorkerStatus.TERMINATED)


def test_env_variables_reach_the_task_as_strings(sdk_env, capsys):
    config = WorkerConfig(
        worker_image="python",
        worker_size="X-Small",
        env_variables={"MY_FIRST_PARAM": "VALUE1", "MY_SECOND_PARAM": 123},
    )
    _, success = taskyard.run_task(file_name="task.py", files_path=EXAMPLES / "tasks", worker_config=config)
    out = capsys.readouterr().out
    assert success
    assert "First Param: VALUE1" in out and "Second Param: 123" in out


def test_submit_returns_at_once_and_reattaches(server, tmp_path):
    write(tmp_path, "long.py", "import time\nprint('start', flush=True)\ntime.sleep(1.5)\nprint('end')\n")
    task = taskyard.submit(file_name="long.py", files_path=tmp_path, client=server.client)
    assert task.status in (TaskStatus.IN_QUEUE, TaskStatus.PREPARING, TaskStatus.IN_PROGRESS)
    assert task.status.alias in ("In Queue", "Preparing to Compute", "In Progress")
    code = f"import taskyard; t = taskyard.Task({task.id!r}); print(t.wait().alias)"
    env = {"TASKYARD_URL": server.url, "TASKYARD_TOKEN": server.token, "PATH": ""}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.stdout.strip() == "Success", done.stderr
    assert task.logs() == "start\nend\n"
    history = [change.status for change in task.status_history]
    assert history == [
        TaskStatus.WAITING_FOR_INPUT,  # a folder the server has not seen is uploaded first
        TaskStatus.IN_QUEUE,
        TaskStatus.PREPARING,
        TaskStatus.IN_PROGRESS,
        TaskStatus.FINALIZING,
        TaskStatus.SUCCESS,
    ]
    starts = [change.started_at for change in task.status_history]
    assert starts == sorted(starts)
    assert all(c.ended_at == n.started_at for c, n in zip(task.status_history, task.status_history[1:]))


def test_a_client_that_dies_does_not_kill_its_task(server, tmp_path):
    write(tmp_path, "slow.py", "import time\ntime.sleep(1)\nprint('survived')\n")
    code = (
        "import os, taskyard\n"
        f"t = taskyard.submit(file_name='slow.py', files_path={str(tmp_path)!r})\n"
        "print(t.id, flush=True)\n"
        "os._exit(3)\n"
    )
    env = {"TASKYARD_URL": server.url, "TASKYARD_TOKEN": server.token, "PATH": ""}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 3
    task = taskyard.Task(done.stdout.strip(), client=server.client)
    assert task.wait(timeout=30) is TaskStatus.SUCCESS
    assert task.logs() == "survived\n"


def test_kill_a_running_task(server, tmp_path):
    write(tmp_path, "forever.py", "import time\nprint('up', flush=True)\nwhile True: time.sleep(0.1)\n")
    task = taskyard.submit(file_name="forever.py", files_path=tmp_path, client=server.client)
    wait_for(lambda: "up" in task.logs())
    assert task.kill(timeout=30) is TaskStatus.KILLED
    assert task.is_terminal() and task.is_failed() and not task.is_running()
    assert TaskStatus.PENDING_KILL in [c.status for c in task.status_history]
    assert server.client.kill(task.id).status is TaskStatus.KILLED  # killing again changes nothing


def test_a_finished_task_cannot_be_killed(server):
    task = taskyard.submit(file_name="task_1.py", files_path=EXAMPLES, client=server.client)
    assert task.wait(timeout=30) is TaskStatus.SUCCESS
    with pytest.raises(Conflict, match="already ended"):
        task.kill()


def test_capture_off_runs_without_logs(server):
    task = taskyard.submit(file_name="task_1.py", files_path=EXAMPLES, capture_task_output=False, client=server.client)
    assert task.wait(timeout=30) is TaskStatus.SUCCESS
    assert task.logs() == ""


def test_outputs_are_downloaded(server, tmp_path):
    src = tmp_path / "src"
    write(
        src,
        "make.py",
        "import os, pathlib\nout = pathlib.Path(os.environ['TASKYARD_OUTPUT_DIR'])\n"
        "(out / 'sub').mkdir()\n(out / 'sub' / 'result.txt').write_text('42')\n",
    )
    task = taskyard.submit(file_name="make.py", files_path=src, client=server.client)
    assert task.wait(timeout=30) is TaskStatus.SUCCESS
    assert task.info.outputs.partial is False
    target = task.download_outputs(output_dir=tmp_path / "got")
    assert (target / "sub" / "result.txt").read_text() == "42"


def test_a_failed_task_outputs_are_partial(server, tmp_path):
    src = tmp_path / "src"
    write(
        src,
        "half.py",
        "import os\nopen(os.path.join(os.environ['TASKYARD_OUTPUT_DIR'], 'half.txt'), 'w').write('h')\n"
        "raise SystemExit(2)\n",
    )
    task = taskyard.submit(file_name="half.py", files_path=src, client=server.client)
    assert task.wait(timeout=30) is TaskStatus.FAILED
    assert task.exit_code == 2
    assert task.info.outputs.partial is True
    target = task.download_outputs(output_dir=tmp_path / "got")
    assert target == tmp_path / "got" / "partial"
    assert (target / "half.txt").read_text() == "h"


def test_run_another_task_on_a_kept_worker(server, tmp_path):
    write(tmp_path, "one.py", "print('one')\n")
    write(tmp_path, "two.sh", "echo two\n")
    worker, ok = taskyard.run_task("one.py", files_path=tmp_path, terminate_on_completion=False, client=server.client)
    assert ok
    same, ok = worker.run_task("two.sh", files_path=tmp_path)
    assert ok and same is worker
    assert worker.get_logs() == "one\ntwo\n"
    worker.terminate()
    wait_for(lambda: worker.status is taskyard.WorkerStatus.TERMINATED)


# -- bad input ------------------------------------------------------------------------------------


def test_bad_input_is_refused_before_anything_starts(server, tmp_path):
    write(tmp_path, "job.txt", "")
    write(tmp_path, "ok.py", "print(1)\n")
    with pytest.raises(InvalidInput, match="not found"):
        taskyard.submit("missing.py", files_path=tmp_path, client=server.client)
    with pytest.raises(InvalidInput, match="unsupported extension"):
        taskyard.submit("job.txt", files_path=tmp_path, client=server.client)
    with pytest.raises(ValueError, match="BAD-NAME"):
        WorkerConfig(env_variables={"BAD-NAME": "x"})
    with pytest.raises(ValueError, match="'Huge size' is not a size name"):
        WorkerConfig(worker_size="Huge size")
    with pytest.raises(InvalidInput, match="valid sizes: X-Small, Small, Medium, Large, X-Large") as refused:
        taskyard.submit(
            "ok.py", files_path=tmp_path, worker_config=WorkerConfig(worker_size="Huge"), client=server.client
        )
    assert refused.value.field == "worker_config.worker_size"
    with pytest.raises(InvalidInput, match="valid images: practicus, python") as refused:
        taskyard.submit(
            "ok.py", files_path=tmp_path, worker_config=WorkerConfig(worker_image="nope"), client=server.client
        )
    assert refused.value.field == "worker_config.worker_image"


def test_api_refuses_bad_specs_with_field_and_reason(server):
    response = server.client._http.post(
        "/tasks", json={"file_name": "../x.py", "bundle_sha256": "0" * 64, "bundle_size": 1}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["field"] == "file_name" and "without '..'" in error["message"]
    response = server.client._http.post(
        "/tasks",
        json={
            "file_name": "a.py",
            "bundle_sha256": "0" * 64,
            "bundle_size": 1,
            "worker_config": {"worker_size": "Huge"},
        },
    )
    assert response.status_code == 422
    assert response.json()["error"]["field"] == "worker_config.worker_size"


def test_upload_over_the_limit_is_refused_with_advice(tmp_path):
    server = Server(tmp_path / "home", TASKYARD_MAX_UPLOAD_MB="0.01").start()  # the server's limit counts
    try:
        write(tmp_path, "t.py", "print(1)\n")
        (tmp_path / "big.bin").write_bytes(__import__("os").urandom(200_000))
        with pytest.raises(TooLarge, match=r"\.taskyardignore"):
            taskyard.submit("t.py", files_path=tmp_path, client=server.client)
    finally:
        server.stop()


def test_junk_folders_are_not_uploaded(server, tmp_path):
    write(tmp_path, "ls.py", "import os\nprint(sorted(os.listdir('.')))\n")
    write(tmp_path, ".git/HEAD", "ref")
    write(tmp_path, "node_modules/x.js", "x")
    write(tmp_path, "data.csv", "a,b\n")
    task = taskyard.submit("ls.py", files_path=tmp_path, client=server.client)
    assert task.wait(timeout=30) is TaskStatus.SUCCESS
    assert task.logs() == "['data.csv', 'ls.py']\n"


# -- identity and ownership ---------------------------------------------------------------------


def test_same_task_id_returns_the_same_task_and_a_different_spec_conflicts(server, tmp_path):
    write(tmp_path, "a.py", "print('a')\n")
    task_id = "ci-build-" + str(time.monotonic_ns())
    first = taskyard.submit("a.py", files_path=tmp_path, task_id=task_id, client=server.client)
    again = taskyard.submit("a.py", files_path=tmp_path, task_id=task_id, client=server.client)
    assert first.id == again.id == task_id
    write(tmp_path, "a.py", "print('changed')\n")
    with pytest.raises(Conflict, match="your task .* with other settings or files"):
        taskyard.submit("a.py", files_path=tmp_path, task_id=task_id, client=server.client)
    assert first.wait(timeout=30) is TaskStatus.SUCCESS


def test_another_users_task_id_is_a_conflict_that_tells_nothing_of_their_task(server, tmp_path):
    write(tmp_path, "a.py", "print('a')\n")
    task_id = "shared-name-" + str(time.monotonic_ns())
    taskyard.submit("a.py", files_path=tmp_path, task_id=task_id, client=server.client)
    other = server.user_client("other-" + str(time.monotonic_ns()))
    with pytest.raises(Conflict) as refused:
        taskyard.submit("a.py", files_path=tmp_path, task_id=task_id, client=other)
    assert str(refused.value) == f"task id {task_id!r} is taken; choose another task_id"


def test_users_see_and_kill_only_their_own(server, tmp_path):
    alice = server.user_client("alice-" + str(time.monotonic_ns()))
    bob = server.user_client("bob-" + str(time.monotonic_ns()))
    write(tmp_path, "wait.py", "import time\ntime.sleep(30)\n")
    task = taskyard.submit("wait.py", files_path=tmp_path, client=alice)
    with pytest.raises(NotFound):
        bob.task(task.id)
    with pytest.raises(NotFound):
        bob.kill(task.id)
    assert task.id not in [t.id for t in bob.list_tasks().tasks]
    assert task.id in [t.id for t in server.client.list_tasks().tasks]  # the admin sees all
    assert server.client.kill(task.id).status in (TaskStatus.KILLED, TaskStatus.PENDING_KILL)
    assert task.wait(timeout=30) is TaskStatus.KILLED


def test_every_call_needs_a_valid_token(server):
    import httpx

    assert httpx.get(server.url + "/api/v1/tasks").status_code == 401
    bad = httpx.get(server.url + "/api/v1/tasks", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and "token" in bad.json()["error"]["message"]


def test_the_same_task_id_submitted_at_once_makes_one_task(any_server):
    import hashlib
    import threading

    from taskyard.client import Client
    from taskyard.models import TaskSpec

    task_id = f"race-{time.monotonic_ns()}"
    spec = TaskSpec(task_id=task_id, file_name="a.py", bundle_sha256=hashlib.sha256(b"x").hexdigest(), bundle_size=1)
    results, errors = [], []

    def submit_once():
        client = Client(any_server.url, any_server.token)
        try:
            results.append(client.submit(spec).id)
        except Exception as exc:
            errors.append(exc)
        finally:
            client.close()

    threads = [threading.Thread(target=submit_once) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and results == [task_id] * 8
    assert any_server.client.kill(task_id).status is TaskStatus.KILLED
