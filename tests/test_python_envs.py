"""Python environments end to end: named virtual environments, and ones built from requirements with uv
(from the package index: each test asks for a version of ``six`` no other test asks for, so that
its first use is a real build), cached, shared, evicted, read-only in the sandbox."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import taskyard
from taskyard import TaskStatus, WorkerConfig
from taskyard.errors import InvalidInput

from support import Server, wait_for, write

BUILDING = "[setup] building a Python environment"
WHERE = "import os, sys\nprint('prefix', sys.prefix)\nprint('venv', os.environ.get('VIRTUAL_ENV'))\n"
SIX = "import six\nprint('six', six.__version__)\n"
# Tries to change the environment it runs in; prints what each try got.
WRITE_INTO_IT = """import os, site, sys
for folder in (sys.prefix, site.getsitepackages()[0]):
    try:
        open(os.path.join(folder, "planted.py"), "w").close()
        print("wrote", folder)
    except OSError as exc:
        print("refused", exc.strerror)
"""


def make_venv(folder: Path) -> Path:
    """A real virtual environment, made as the seed says (``python -m venv``), without pip (faster)."""
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(folder)], check=True, timeout=60)
    return folder


@pytest.fixture(scope="module")
def envs_server(tmp_path_factory) -> Iterator[Server]:
    """A control plane whose named venvs are in a folder of its own home (hidden in the sandbox, as ~/.venv is)."""
    home = tmp_path_factory.mktemp("envs")
    make_venv(home / "venvs" / "analysis")
    server = Server(home, TASKYARD_VENVS_DIR=str(home / "venvs")).start()
    yield server
    server.stop()


def run(server: Server, folder: Path, code: str, **options) -> taskyard.Task:
    write(folder, "task.py", code)
    task = taskyard.submit("task.py", files_path=folder, client=server.client, **options)
    task.wait(timeout=120)
    return task


def requirements(*lines: str) -> WorkerConfig:
    return WorkerConfig(python_requirements=list(lines))


def cached(server: Server) -> dict[str, dict]:
    """The environments in the server's cache: key -> what its marker says."""
    return {marker.name.removesuffix(".ready"): json.loads(marker.read_text())
            for marker in (server.home / "envs").glob("*.ready")}


def folders(server: Server) -> set[str]:
    return {path.name for path in (server.home / "envs").iterdir() if path.is_dir()}


def key_of(server: Server, line: str) -> str:
    return next(key for key, about in cached(server).items() if about["requirements"] == [line])


# -- named virtual environments ---------------------------------------------------------------------


def test_a_task_runs_with_the_python_of_its_named_venv(envs_server, tmp_path):
    venv = envs_server.home / "venvs" / "analysis"
    task = run(envs_server, tmp_path, WHERE, python_venv_name="analysis")
    assert task.status is TaskStatus.SUCCESS, task.logs()
    assert task.logs().splitlines() == [f"prefix {venv}", f"venv {venv}"]


def test_a_named_venv_is_read_only_in_the_sandbox(envs_server, tmp_path):
    task = run(envs_server, tmp_path, WRITE_INTO_IT, python_venv_name="analysis")
    assert task.status is TaskStatus.SUCCESS, task.logs()
    if envs_server.client.worker(task.worker_name).sandboxed:
        assert task.logs().splitlines() == ["refused Read-only file system"] * 2


def test_the_sdk_and_worker_run_task_pass_the_venv_name(envs_server, tmp_path, capsys):
    write(tmp_path, "task.py", WHERE)
    venv = envs_server.home / "venvs" / "analysis"
    worker, success = taskyard.run_task("task.py", tmp_path, client=envs_server.client, python_venv_name="analysis",
                                        terminate_on_completion=False)
    assert success and f"prefix {venv}" in capsys.readouterr().out
    _, success = worker.run_task("task.py", tmp_path, python_venv_name="analysis")
    worker.terminate()
    assert success and f"prefix {venv}" in capsys.readouterr().out


def test_an_unknown_venv_is_refused_at_submit_naming_those_there(envs_server, tmp_path):
    make_venv(envs_server.home / "venvs" / "reports")
    (envs_server.home / "venvs" / "not-a-venv").mkdir()
    write(tmp_path, "task.py", WHERE)
    there = r"no Python virtual environment 'nope'; there are: analysis, reports$"
    with pytest.raises(InvalidInput, match=there) as refused:
        taskyard.submit("task.py", files_path=tmp_path, python_venv_name="nope", client=envs_server.client)
    assert refused.value.field == "python_venv_name"
    with pytest.raises(ValueError, match="must be a folder name"):
        taskyard.submit("task.py", files_path=tmp_path, python_venv_name="../venvs", client=envs_server.client)


def test_a_venv_and_requirements_together_are_refused(envs_server, tmp_path):
    write(tmp_path, "task.py", WHERE)
    with pytest.raises(InvalidInput, match="give one"):
        taskyard.submit("task.py", files_path=tmp_path, worker_config=requirements("six"),
                        python_venv_name="analysis", client=envs_server.client)


# -- environments built from requirements ------------------------------------------------------------


def test_requirements_are_installed_once_then_the_environment_is_reused(envs_server, tmp_path):
    first = run(envs_server, tmp_path, WHERE + SIX, worker_config=requirements("six==1.16.0"))
    assert first.status is TaskStatus.SUCCESS, first.logs()
    env = envs_server.home / "envs" / key_of(envs_server, "six==1.16.0")
    logs = first.logs()
    assert BUILDING in logs and "[setup]  + six==1.16.0" in logs
    assert logs.endswith(f"prefix {env}\nvenv {env}\nsix 1.16.0\n"), logs

    again = run(envs_server, tmp_path, WHERE + SIX, worker_config=requirements("six==1.16.0"))
    assert again.status is TaskStatus.SUCCESS, again.logs()
    setup, *rest = again.logs().splitlines()
    assert setup.startswith(f"[setup] Python environment {env.name}: cached")
    assert rest == [f"prefix {env}", f"venv {env}", "six 1.16.0"]


def test_a_requirements_file_in_the_task_folder_and_the_same_lines_share_one_environment(envs_server, tmp_path):
    write(tmp_path, "requirements.txt", "# what the task needs\n\nsix==1.15.0   # pinned\n")
    first = run(envs_server, tmp_path, SIX, worker_config=WorkerConfig(python_requirements="requirements.txt"))
    assert first.status is TaskStatus.SUCCESS, first.logs()
    assert BUILDING in first.logs() and first.logs().endswith("six 1.15.0\n")
    again = run(envs_server, tmp_path, SIX, worker_config=requirements("six==1.15.0"))
    assert again.status is TaskStatus.SUCCESS and BUILDING not in again.logs(), again.logs()


def test_a_shell_task_runs_with_its_environment_activated(envs_server, tmp_path):
    write(tmp_path, "task.sh", "python -c 'import six, sys; print(six.__version__, sys.prefix)'\n")
    task = taskyard.submit("task.sh", files_path=tmp_path, worker_config=requirements("six==1.14.0"),
                           client=envs_server.client)
    assert task.wait(timeout=120) is TaskStatus.SUCCESS, task.logs()
    env = envs_server.home / "envs" / key_of(envs_server, "six==1.14.0")
    assert task.logs().endswith(f"1.14.0 {env}\n")


def test_concurrent_first_uses_build_the_environment_once(envs_server, tmp_path):
    def one(index: int) -> taskyard.Task:
        return run(envs_server, tmp_path / str(index), SIX, worker_config=requirements("six==1.13.0"))

    with ThreadPoolExecutor(2) as pool:
        tasks = list(pool.map(one, range(2)))
    assert [task.status for task in tasks] == [TaskStatus.SUCCESS] * 2, [task.logs() for task in tasks]
    assert sum(task.logs().count(BUILDING) for task in tasks) == 1
    assert all(task.logs().endswith("six 1.13.0\n") for task in tasks)


def test_a_failed_install_is_a_runtime_error_with_the_installers_message(envs_server, tmp_path):
    missing = "taskyard-no-such-package-anywhere==1.0"
    task = run(envs_server, tmp_path, SIX, worker_config=requirements(missing))
    assert task.status is TaskStatus.RUNTIME_ERROR
    assert "installing the requirements failed (exit code 1)" in task.info.reason
    assert "taskyard-no-such-package-anywhere was not found" in task.info.reason
    assert "[setup]" in task.logs() and "six" not in task.logs()
    assert all(about["requirements"] != [missing] for about in cached(envs_server).values())
    assert folders(envs_server) == set(cached(envs_server))  # nothing left of it


def test_a_built_environment_is_read_only_for_the_task(envs_server, tmp_path):
    task = run(envs_server, tmp_path, WRITE_INTO_IT, worker_config=requirements("six==1.12.0"))
    assert task.status is TaskStatus.SUCCESS, task.logs()
    tries = [line for line in task.logs().splitlines() if not line.startswith("[setup]")]
    if envs_server.client.worker(task.worker_name).sandboxed:
        assert tries == ["refused Read-only file system"] * 2


def test_requirements_that_cannot_be_cached_are_refused_at_once(envs_server, tmp_path):
    for line, why in [("-r other.txt", "-r is not supported"), ("-e .", "-e is not supported"),
                      ("./local/pkg", "a local path is not supported"), ("six\nidna", "one line")]:
        with pytest.raises(ValueError, match=why):
            requirements(line)
    with pytest.raises(ValueError, match="relative to the task folder"):
        WorkerConfig(python_requirements="../requirements.txt")
    write(tmp_path, "task.py", SIX)
    with pytest.raises(InvalidInput, match="requirements file 'reqs.txt' not found") as refused:
        taskyard.submit("task.py", files_path=tmp_path, worker_config=WorkerConfig(python_requirements="reqs.txt"),
                        client=envs_server.client)
    assert refused.value.field == "worker_config.python_requirements"


# -- the cap ---------------------------------------------------------------------------------------


@pytest.fixture
def tiny_cache(tmp_path) -> Iterator[Server]:
    """A control plane whose environment cache holds about 10 kB: any environment puts it over."""
    server = Server(tmp_path / "home", TASKYARD_ENV_CACHE_MB="0.01").start()
    yield server
    server.stop()


def test_past_the_cap_the_least_recently_used_environments_no_task_holds_are_removed(tiny_cache, tmp_path,
                                                                                     readable_dir):
    go = readable_dir / "go"  # outside /tmp, which is the sandbox's own
    holder = f"import os, time\nwhile not os.path.exists({str(go)!r}):\n    time.sleep(0.05)\n"
    write(tmp_path / "held", "task.py", holder)
    held = taskyard.submit("task.py", files_path=tmp_path / "held", worker_config=requirements("six==1.11.0"),
                           client=tiny_cache.client)
    wait_for(lambda: held.status is TaskStatus.IN_PROGRESS, timeout=60)
    run(tiny_cache, tmp_path / "a", SIX, worker_config=requirements("six==1.10.0"))
    in_cache = sorted(about["requirements"][0] for about in cached(tiny_cache).values())
    assert in_cache == ["six==1.10.0", "six==1.11.0"]  # over the cap, but the first is in use
    go.touch()  # the first is no longer in use
    assert held.wait(timeout=60) is TaskStatus.SUCCESS, held.logs()

    last = run(tiny_cache, tmp_path / "b", SIX, worker_config=requirements("six==1.9.0"))
    assert last.status is TaskStatus.SUCCESS, last.logs()
    assert [about["requirements"] for about in cached(tiny_cache).values()] == [["six==1.9.0"]]
    assert folders(tiny_cache) == set(cached(tiny_cache))
