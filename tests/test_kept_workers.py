"""Into a kept worker: ``Worker.exec``, ``Worker.open_notebook`` and ``taskyard workers exec / shell``,
end to end on real workers, in their sandboxes, for their owner only."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import taskyard
from taskyard import TaskStatus, WorkerStatus
from taskyard.client import Client
from taskyard.errors import Conflict, NotFound

from foreground import Foreground
from support import Server, processes_in, wait_for, write

KEPT_TASK = "import os\nopen('my_log.txt', 'w').write('written by the task\\n')\nprint('task done')\n"


def kept_worker(client: Client, folder: Path, **options) -> taskyard.Worker:
    """A worker whose task wrote ``my_log.txt`` in its folder and ended, kept for us."""
    write(folder, "task.py", KEPT_TASK)
    task = taskyard.submit("task.py", files_path=folder, client=client, terminate_on_completion=False, **options)
    assert task.wait(timeout=120) is TaskStatus.SUCCESS, task.logs()
    return taskyard.Worker(task.worker_name or "", client=client)


@pytest.fixture
def worker(server, tmp_path):
    kept = kept_worker(server.client, tmp_path)
    yield kept
    kept.terminate()


def cli_env(server: Server) -> dict[str, str]:
    return {**os.environ, "TASKYARD_URL": server.url, "TASKYARD_TOKEN": server.token,
            "PYTHONPATH": os.pathsep.join(sys.path)}


# -- exec ----------------------------------------------------------------------------------------


def test_exec_runs_in_the_task_folder_with_the_task_environment(worker):
    result = worker.exec("sh", "-c", 'cat my_log.txt; echo "cwd=$PWD task=$TASKYARD_TASK_ID"; echo oops >&2; exit 3')
    assert result.exit_code == 3
    assert result.stdout.startswith("written by the task\ncwd=") and result.stderr == "oops\n"
    task_dir = Path(result.stdout.split("cwd=")[1].split()[0])
    assert task_dir.name == "task" and task_dir.parent.name == worker.name
    assert result.stdout.rstrip().rsplit("task=", 1)[1]  # the task's id, as the task had it


def test_exec_runs_in_the_sandbox_that_hides_the_servers_home(server, worker):
    assert worker.sandboxed
    secret_file = next(path for path in server.home.iterdir() if path.is_file())  # the database, the token...
    assert worker.exec("test", "-e", str(secret_file)).exit_code == 1
    assert worker.exec("test", "-e", str(secret_file.parent / "workers" / worker.name / "task")).exit_code == 0
    uid = worker.exec("id", "-u").stdout.strip()
    assert uid != "0"  # the task's user, not the control plane's


def test_exec_passes_stdin_and_stops_a_command_over_its_timeout(worker):
    assert worker.exec("cat", stdin="piped in\n").stdout == "piped in\n"
    started = time.monotonic()
    result = worker.exec("sleep", "60", timeout=1)
    assert result.timed_out and result.exit_code != 0 and time.monotonic() - started < 20


def test_another_user_cannot_send_commands_to_the_worker(server, worker):
    stranger = taskyard.Worker(worker.name, client=server.user_client(f"stranger-{time.monotonic_ns()}"))
    with pytest.raises(NotFound):
        stranger.exec("true")
    with pytest.raises(NotFound):
        stranger.open_notebook(open_browser=False)
    response = stranger.client._http.post(f"/workers/{worker.name}/exec", json={"argv": ["id"]})
    assert response.status_code == 404


def test_a_terminated_worker_takes_no_command(server, tmp_path):
    kept = kept_worker(server.client, tmp_path)
    kept.terminate()
    wait_for(lambda: kept.status.is_finished(), timeout=30)
    with pytest.raises(Conflict, match="only a running worker takes commands"):
        kept.exec("true")


def test_the_cli_exec_prints_the_output_and_exits_with_the_commands_code(server, worker):
    command = [sys.executable, "-m", "taskyard", "workers", "exec", worker.name, "--", "sh", "-c",
               "cat my_log.txt; exit 7"]
    done = subprocess.run(command, env=cli_env(server), capture_output=True, text=True, timeout=120)
    assert done.returncode == 7, done.stderr
    assert done.stdout == "written by the task\n"


# -- shell ---------------------------------------------------------------------------------------


def test_the_shell_takes_piped_commands_in_the_task_folder(server, worker):
    command = [sys.executable, "-m", "taskyard", "workers", "shell", worker.name]
    script = "cd subdir 2>/dev/null; cat my_log.txt\nx=41\necho $((x + 1))\nexit 5\n"
    done = subprocess.run(command, env=cli_env(server), input=script, capture_output=True, text=True, timeout=120)
    assert done.returncode == 5, done.stderr
    assert done.stdout == "written by the task\n42\n"


def test_the_shell_on_a_terminal_is_interactive(server, worker):
    parent, child = pty.openpty()
    command = [sys.executable, "-m", "taskyard", "workers", "shell", worker.name]
    process = subprocess.Popen(command, env=cli_env(server), stdin=child, stdout=child, stderr=child)
    os.close(child)
    try:
        read_until(parent, b"$ ")  # the prompt: the shell reads what is typed from now on
        os.write(parent, b"echo $((6 * 7))-$(cat my_log.txt | wc -w)\n")
        seen = read_until(parent, b"42-4")
        os.write(parent, b"sleep 60; echo slept\n")
        time.sleep(1)
        os.write(parent, b"\x03")  # Ctrl-C stops the sleep: the terminal is the shell's own
        seen += read_until(parent, b"$ ", timeout=30)
        os.write(parent, b"test -t 0 && echo on-a-terminal; exit 4\n")
        seen += read_until(parent, b"\ron-a-terminal\r\n")
        assert process.wait(timeout=30) == 4, seen
    finally:
        process.kill()
        os.close(parent)
    assert b"slept" not in seen.replace(b"echo slept", b"")


def read_until(fd: int, wanted: bytes, timeout: float = 60) -> bytes:
    seen, deadline = b"", time.monotonic() + timeout
    while wanted not in seen and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.5)
        if ready:
            try:
                seen += os.read(fd, 4096)
            except OSError:
                break
    assert wanted in seen, seen
    return seen


# -- open_notebook -------------------------------------------------------------------------------


def jupyter_servers(server: Server) -> list[int]:
    return [pid for pid in processes_in(server.home / "workers") if b"jupyter_server" in _cmdline(pid)]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


# -- two servers on one PostgreSQL ---------------------------------------------------------------


@pytest.fixture
def two_servers(tmp_path, fresh_pg_url):
    """Two peer servers sharing one home and one database, each worker's agent talking to one of them:
    ``(first, second, worker whose agent talks to first, worker whose agent talks to second)``.

    The first starts alone and places the first worker; the second starts then, and places the
    second worker because the first, whose one worker is kept, is full."""
    home = tmp_path / "home"
    solo = {"TASKYARD_MAX_WORKERS": "1", "TASKYARD_WARM_WORKERS": "0"}
    first = Foreground(home, "--db-url", fresh_pg_url, env=solo).start()
    servers = [first]
    try:
        worker_of_first = kept_worker(first.client(), tmp_path / "first")
        second = Foreground(home, "--db-url", fresh_pg_url, env={**solo, "TASKYARD_MAX_WORKERS": "2"}).start()
        servers.append(second)
        worker_of_second = kept_worker(second.client(first.token), tmp_path / "second")
        yield first, second, worker_of_first, worker_of_second
    finally:
        for server in reversed(servers):
            server.stop()


@pytest.mark.postgres
def test_a_command_sent_through_one_server_reaches_an_agent_that_talks_to_the_other(two_servers, tmp_path):
    first, second, worker_of_first, worker_of_second = two_servers
    for worker, through in ((worker_of_first, second), (worker_of_second, first)):
        there = taskyard.Worker(worker.name, client=through.client(first.token))
        result = there.exec("sh", "-c", "cat my_log.txt; echo $TASKYARD_WORKER_NAME >&2; exit 4")
        assert (result.exit_code, result.stdout) == (4, "written by the task\n")
        write(tmp_path / worker.name, "sent.txt", f"for {worker.name}\n")
        assert there.upload_files(tmp_path / worker.name / "sent.txt") == ["sent.txt"]
        assert there.exec("cat", "sent.txt").stdout == f"for {worker.name}\n"
        assert there.download_files("my_log.txt", tmp_path / "back" / worker.name) == ["my_log.txt"]


@pytest.mark.postgres
def test_another_user_cannot_send_commands_to_a_worker_through_the_other_server(two_servers):
    first, second, worker_of_first, worker_of_second = two_servers
    stranger_token = first.client().add_user("stranger").token
    for worker, through in ((worker_of_first, second), (worker_of_second, first)):
        with pytest.raises(NotFound):
            taskyard.Worker(worker.name, client=through.client(stranger_token)).exec("true")


@pytest.mark.parametrize("network", [True, False], ids=["network", "no-network"])
def test_open_notebook_serves_jupyter_with_its_token_only_and_stops_with_the_worker(server, tmp_path, capsys,
                                                                                   network):
    pytest.importorskip("jupyter_server")
    config = taskyard.WorkerConfig(network=network)
    kept = kept_worker(server.client, tmp_path, worker_config=config)
    try:
        url = kept.open_notebook()
        assert url in capsys.readouterr().out
        base, _, token = url.partition("/?token=")
        assert base.startswith("http://127.0.0.1:") and len(token) >= 32
        status = httpx.get(f"{base}/api/status", headers={"Authorization": f"token {token}"}, timeout=30)
        assert status.status_code == 200 and "started" in status.json()
        assert httpx.get(f"{base}/api/status", timeout=30).status_code in (401, 403)
        assert httpx.get(f"{base}/api/status?token=wrong", timeout=30).status_code in (401, 403)
        contents = httpx.get(f"{base}/api/contents", params={"token": token}, timeout=30).json()
        assert "my_log.txt" in [entry["name"] for entry in contents["content"]]  # served from the task folder
        assert kept.open_notebook(open_browser=False) == url  # the same server, asked again
        assert jupyter_servers(server)
    finally:
        kept.terminate()
    wait_for(lambda: kept.status is not WorkerStatus.RUNNING and not jupyter_servers(server), timeout=60)
    with pytest.raises(httpx.TransportError):
        httpx.get(f"{base}/api/status", headers={"Authorization": f"token {token}"}, timeout=5)


def test_the_readme_example_runs_as_written(server):
    pytest.importorskip("jupyter_server")
    root = Path(__file__).resolve().parent.parent
    section = (root / "README.md").read_text().split("## Inside a kept worker", 1)[1]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    env = {**cli_env(server), "DISPLAY": ""}
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "0 .\n..\ntask.py\n" in done.stdout and "/?token=" in done.stdout
