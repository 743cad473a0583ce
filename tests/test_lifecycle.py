"""The whole lifecycle under faults: kills, time limits, lost workers, retries, restarts, pools, logs."""

from __future__ import annotations

import hashlib
import os
import signal
import time
from pathlib import Path

import pytest

import taskyard
from taskyard import Pool, TaskStatus
from taskyard.models import parse_duration

from support import EXAMPLES, Server, cwd_of, seen_from_here, wait_for, write

S = TaskStatus


@pytest.fixture(scope="module")
def lc(tmp_path_factory):
    """A control plane with a short kill grace and heartbeat timeout."""
    server = Server(
        tmp_path_factory.mktemp("lifecycle"), TASKYARD_KILL_GRACE="1", TASKYARD_HEARTBEAT_TIMEOUT="3"
    ).start()
    yield server
    server.stop()


def submit(server: Server, folder: Path, name: str, code: str, **options) -> taskyard.Task:
    write(folder, name, code)
    return taskyard.submit(name, files_path=folder, client=server.client, **options)


def statuses(task: taskyard.Task) -> list[TaskStatus]:
    return [change.status for change in task.status_history]


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def agent_pid(server: Server, worker_name: str) -> int:
    """The pid of the agent of a local worker: the one process that runs in the worker's folder."""
    folder = str(server.home / "workers" / worker_name)
    found = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and cwd_of(int(pid)) == folder]
    assert len(found) == 1, f"agent processes of {worker_name}: {found}"
    return found[0]


def running(task: taskyard.Task, marker: str = "up") -> None:
    wait_for(lambda: marker in task.logs(), timeout=30)


# -- kill ------------------------------------------------------------------------------------------

STUBBORN = """
import os, signal, subprocess, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
kids = [subprocess.Popen([sys.executable, "-c", deaf]) for _ in range(2)]
if os.fork() == 0:
    time.sleep(600)
    os._exit(0)
print("pids", os.getpid(), *[k.pid for k in kids], flush=True)
print("up", flush=True)
time.sleep(600)
"""


def test_kill_leaves_no_process_behind_even_one_that_ignores_sigterm(lc, tmp_path):
    task = submit(lc, tmp_path, "stubborn.py", STUBBORN)
    running(task)
    reported = [int(p) for p in task.logs().split("pids ", 1)[1].split("\n", 1)[0].split()]
    pids = list(seen_from_here(lc.home / "workers" / task.worker_name, dict(enumerate(reported))).values())
    assert all(alive(pid) for pid in pids)
    assert task.kill(timeout=30) is S.KILLED
    wait_for(lambda: not any(alive(pid) for pid in pids), timeout=10)
    assert statuses(task)[-2:] == [S.PENDING_KILL, S.KILLED]


def test_a_queued_task_is_killed_at_once_without_starting(lc, tmp_path):
    pool = Pool.create(f"one-{time.monotonic_ns()}", max_workers=1, client=lc.client)
    blocker = submit(lc, tmp_path, "block.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n", pool=pool)
    running(blocker)
    second = submit(lc, tmp_path, "t.py", "print('never')\n", pool=pool)
    third = submit(lc, tmp_path, "t.py", "print('never')\n", pool=pool)
    assert (second.position_in_queue, third.position_in_queue) == (1, 2)
    assert second.kill(wait=False) is S.KILLED
    assert statuses(second)[-2:] == [S.IN_QUEUE, S.KILLED]
    assert S.PREPARING not in statuses(second)
    assert third.position_in_queue == 1
    pool.delete()
    assert third.wait(timeout=10) is S.MACHINE_TERMINATED_IN_QUEUE
    assert blocker.wait(timeout=30) is S.MACHINE_TERMINATED_BY_USER


def test_sync_context_kills_on_error_and_plain_wait_does_not(lc, tmp_path):
    task = submit(lc, tmp_path, "wait.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    with pytest.raises(RuntimeError), task.sync_context():
        running(task)
        raise RuntimeError("the caller failed")
    assert task.wait(timeout=30) is S.KILLED
    other = submit(lc, tmp_path, "short.py", "import time\ntime.sleep(0.5)\n")
    assert other.wait(timeout=0.01) in (S.IN_QUEUE, S.PREPARING, S.IN_PROGRESS, S.WAITING_FOR_INPUT)
    assert other.wait(timeout=30) is S.SUCCESS


# -- time limits -----------------------------------------------------------------------------------


def test_time_to_live_parses_the_usual_forms():
    assert parse_duration("1h30m") == 5400
    assert parse_duration("45s") == parse_duration(45) == parse_duration("45") == 45
    assert parse_duration("2d") == 172800
    for bad in ("soon", "1x", "-5", "0"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_a_task_past_its_time_to_live_is_timed_out(lc, tmp_path):
    task = submit(lc, tmp_path, "slow.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n", time_to_live="1s")
    assert task.wait(timeout=30) is S.TASK_TIMED_OUT
    assert "time_to_live of 1 s" in task.info.reason
    assert S.IN_PROGRESS in statuses(task)


def test_a_worker_past_its_pool_time_limit_ends_its_task(lc, tmp_path):
    pool = Pool.create(f"ttl-{time.monotonic_ns()}", max_workers=1, time_to_live=2, client=lc.client)
    task = submit(lc, tmp_path, "slow.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n", pool=pool)
    assert task.wait(timeout=30) is S.MACHINE_TIME_LIMIT_REACHED
    pool.delete()


# -- lost workers and retries -------------------------------------------------------------------


def test_a_lost_worker_ends_its_task_and_a_retry_runs_it_again(lc, tmp_path, readable_dir):
    marker = readable_dir / "first-run-done"  # the sandbox lets a task read it, not write it
    code = (
        "import os, pathlib, time\n"
        f"m = pathlib.Path({str(marker)!r})\n"
        "if m.exists():\n    print('second run'); raise SystemExit(0)\n"
        "print('up', flush=True); time.sleep(600)\n"
    )
    task = submit(lc, tmp_path, "flaky.py", code, max_retries=1)
    running(task)
    marker.touch()
    first_worker = task.worker_name
    os.kill(agent_pid(lc, first_worker), signal.SIGKILL)
    assert task.wait(timeout=30) is S.SUCCESS
    info = task.info
    assert info.attempt == 2 and info.worker_name != first_worker
    assert S.TASK_RUNNER_TERMINATED in statuses(task)
    assert "running it again (retry 1 of 1)" in task.logs() and "second run" in task.logs()


def test_without_retries_a_lost_worker_is_final(lc, tmp_path):
    task = submit(lc, tmp_path, "up.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    running(task)
    os.kill(agent_pid(lc, task.worker_name), signal.SIGKILL)
    assert task.wait(timeout=30) is S.TASK_RUNNER_TERMINATED
    assert "was lost" in task.info.reason


def test_a_reclaimed_machine_is_spot_reclaimed_and_resubmitted(lc, tmp_path, readable_dir):
    marker = readable_dir / "reclaimed-once"
    code = (
        "import pathlib, time\n"
        f"m = pathlib.Path({str(marker)!r})\n"
        "if m.exists():\n    raise SystemExit(0)\n"
        "print('up', flush=True); time.sleep(600)\n"
    )
    task = submit(lc, tmp_path, "spot.py", code, resubmit_on_preemption=True)
    running(task)
    marker.touch()
    (lc.home / "workers" / task.worker_name / "preempted").touch()  # the provider's notice, injected
    assert task.wait(timeout=30) is S.SUCCESS
    assert S.SPOT_RECLAIMED in statuses(task)


def test_terminating_a_busy_worker_by_hand(lc, tmp_path):
    task = submit(lc, tmp_path, "up.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    running(task)
    lc.client.terminate_worker(task.worker_name)
    assert task.wait(timeout=30) is S.MACHINE_TERMINATED_BY_USER


# -- logs ----------------------------------------------------------------------------------------


def test_a_hundred_thousand_lines_all_arrive_in_order(lc, tmp_path):
    task = submit(lc, tmp_path, "many.py", "for i in range(100_000):\n    print(i)\n")
    assert task.wait(timeout=120) is S.SUCCESS
    lines = task.logs().splitlines()
    assert lines == [str(i) for i in range(100_000)]


def test_non_utf8_output_does_not_break_logs(lc, tmp_path):
    code = "import sys\nsys.stdout.buffer.write(b'ok \\xff\\xfe bytes\\n')\nprint('after')\n"
    task = submit(lc, tmp_path, "bytes.py", code)
    assert task.wait(timeout=30) is S.SUCCESS
    assert task.logs() == "ok \ufffd\ufffd bytes\nafter\n"


def test_a_log_over_the_cap_is_cut_with_a_marker(tmp_path):
    server = Server(tmp_path / "home", TASKYARD_LOG_CAP_MB="0.01").start()
    try:
        task = submit(server, tmp_path, "loud.py", "for i in range(5000):\n    print('x' * 20, i)\n")
        assert task.wait(timeout=60) is S.SUCCESS
        logs = task.logs()
        assert "log truncated" in logs and "TASKYARD_LOG_CAP_MB" in logs
        assert len(logs.encode()) < 0.01 * 1024 * 1024 + 200
    finally:
        server.stop()


# -- uploads and restarts ------------------------------------------------------------------------


def test_an_interrupted_upload_never_starts_the_task(lc):
    body = b"not really a bundle, but what matters is that it is cut short"
    spec = {"file_name": "a.py", "bundle_sha256": hashlib.sha256(body).hexdigest(), "bundle_size": len(body)}
    created = lc.client._http.post("/tasks", json=spec).json()
    assert created["status"] == S.WAITING_FOR_INPUT.value
    cut = lc.client._http.put(f"/tasks/{created['id']}/bundle", content=body[:10])
    assert cut.status_code == 422 and "cut short" in cut.json()["error"]["message"]
    time.sleep(1)
    assert lc.client.task(created["id"]).status is S.WAITING_FOR_INPUT
    assert lc.client.kill(created["id"]).status is S.KILLED


def test_a_killed_server_loses_nothing(tmp_path):
    server = Server(tmp_path / "home", TASKYARD_MAX_WORKERS="1").start()
    try:
        code = "import time\nfor i in range(30):\n    print('line', i, flush=True)\n    time.sleep(0.1)\n"
        running_task = submit(server, tmp_path, "count.py", code)
        queued = taskyard.submit("task_1.py", files_path=EXAMPLES, client=server.client)
        wait_for(lambda: "line 3" in running_task.logs())
        server.kill9()
        time.sleep(1)  # the agent keeps printing and retrying meanwhile
        server.start()
        running_task.client = queued.client = server.client
        assert running_task.wait(timeout=60) is S.SUCCESS
        assert running_task.logs().splitlines() == [f"line {i}" for i in range(30)]
        assert queued.wait(timeout=60) is S.SUCCESS
        assert queued.logs() == "Hello from simple task 1\n"
        assert statuses(running_task)[-1] is S.SUCCESS
    finally:
        server.stop()


# -- preparing the worker: startup script and git repositories ----------------------------------


def test_startup_script_runs_first_and_its_output_is_logged(lc, tmp_path):
    config = taskyard.WorkerConfig(startup_script="echo preparing; echo ready > prepared.txt")
    task = submit(lc, tmp_path, "use.py", "print(open('prepared.txt').read().strip())\n", worker_config=config)
    assert task.wait(timeout=30) is S.SUCCESS
    assert task.logs() == "preparing\nready\n"


def test_a_failing_startup_script_is_a_runtime_error(lc, tmp_path):
    config = taskyard.WorkerConfig(startup_script="echo 'no such package' >&2; exit 3")
    task = submit(lc, tmp_path, "never.py", "print('must not run')\n", worker_config=config)
    assert task.wait(timeout=30) is S.RUNTIME_ERROR
    assert "startup script failed with exit code 3" in task.info.reason
    logs = task.logs()
    assert "no such package" in logs and "must not run" not in logs


def test_git_repositories_are_cloned_into_the_task_folder(lc, tmp_path, readable_dir):
    import subprocess

    repo = readable_dir / "repo"  # where a sandboxed clone can read it
    write(repo, "model.txt", "v1\n")
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run([*git, "-C", str(repo), "add", "."], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "v1"], check=True)
    config = taskyard.WorkerConfig(git_configs=[taskyard.GitConfig(remote_url=f"file://{repo}", local_path="m")])
    src = tmp_path / "src"
    task = submit(lc, src, "read.py", "print(open('m/model.txt').read().strip())\n", worker_config=config)
    assert task.wait(timeout=30) is S.SUCCESS
    assert task.logs() == "v1\n"
    missing = taskyard.WorkerConfig(git_configs=[taskyard.GitConfig(remote_url=f"file://{tmp_path}/nothing")])
    task = submit(lc, src, "read.py", "print('x')\n", worker_config=missing)
    assert task.wait(timeout=30) is S.RUNTIME_ERROR
    assert "git clone" in task.info.reason
