"""Workers made with no task (``taskyard.create_worker``), their files, and the region object, end to end on
real workers in their sandboxes: for their owner only, counted by admission, ended by their time to live."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import taskyard
from taskyard import Pool, TaskStatus, WorkerConfig, WorkerStatus
from taskyard.errors import Conflict, InvalidInput, NotFound, TimedOut, Unsupported
from taskyard.regions import get_region, region_factory

from support import Server, wait_for, write

FIRST_TASK = """import os
text = open('inputs/input.txt').read()
open('result.txt', 'w').write(text.upper() + ' ' + os.environ['GREETING'] + '\\n')
print('first task read', text)
"""
SECOND_TASK = """print('second task sees', open('result.txt').read().strip(), 'and', open('inputs/sub/more.txt').read())
"""


def pool_name() -> str:
    return "p" + secrets.token_hex(4)


@pytest.fixture
def made():
    """Workers made in a test, terminated after it."""
    workers: list[taskyard.Worker] = []
    yield workers
    for worker in workers:
        if not worker.status.is_finished():
            worker.terminate()


def create(server: Server, made: list, config: WorkerConfig | None = None, **options) -> taskyard.Worker:
    worker = taskyard.create_worker(config, client=server.client, **options)
    made.append(worker)
    return worker


def test_a_created_worker_takes_files_runs_tasks_that_see_them_and_gives_files_back(any_server, made, tmp_path,
                                                                                    capsys):
    server = any_server
    worker = create(server, made, WorkerConfig(env_variables={"GREETING": "hi"}))
    info = worker.refresh()
    assert info.keep and info.task_id is None and info.user == "admin"
    worker.wait_until_ready(timeout=60)
    assert worker.status is WorkerStatus.RUNNING
    data = tmp_path / "data"
    write(data, "input.txt", "hello")
    write(data / "sub", "more.txt", "more")
    assert sorted(worker.upload_files(data, destination="inputs")) == ["input.txt", "sub", "sub/more.txt"]

    tasks = tmp_path / "tasks"
    write(tasks, "first.py", FIRST_TASK)
    write(tasks, "second.py", SECOND_TASK)
    assert worker.run_task("first.py", files_path=tasks) == (worker, True)
    assert worker.run_task("second.py", files_path=tasks) == (worker, True)
    printed = capsys.readouterr().out
    assert "first task read hello" in printed and "second task sees HELLO hi and more" in printed

    assert worker.download_files("result.txt", tmp_path / "got") == ["result.txt"]
    assert (tmp_path / "got" / "result.txt").read_text() == "HELLO hi\n"
    worker.view_logs()
    logs = capsys.readouterr().out
    assert logs.index("first task read hello") < logs.index("second task sees HELLO")
    worker.terminate()
    wait_for(lambda: worker.status is WorkerStatus.TERMINATED, timeout=30)


def test_files_land_inside_the_sandbox_view_and_a_task_sees_them_before_any_task_ran(server, made, tmp_path):
    worker = create(server, made)
    worker.wait_until_ready(timeout=60)
    write(tmp_path / "one", "note.txt", "uploaded first")
    worker.upload_files(tmp_path / "one" / "note.txt")  # a single file, into the task folder itself
    write(tmp_path / "tasks", "look.sh", 'cat note.txt; echo; ls -l note.txt | cut -c1-10; test -w note.txt\n')
    task = taskyard.submit("look.sh", files_path=tmp_path / "tasks", worker=worker, client=server.client,
                           terminate_on_completion=False)
    assert task.wait(timeout=60) is TaskStatus.SUCCESS, task.logs()  # the sandboxed task may write it, too
    assert task.logs().startswith("uploaded first\n")
    assert worker.sandboxed


def test_files_cannot_lead_out_of_the_task_folder(server, made, tmp_path):
    worker = create(server, made)
    worker.wait_until_ready(timeout=60)
    write(tmp_path / "tasks", "plant.sh", "ln -s / escape\n")
    assert worker.run_task("plant.sh", files_path=tmp_path / "tasks")[1]
    write(tmp_path / "up", "x.txt", "x")
    for destination in ("../outputs", "/etc", "escape/tmp", "~/elsewhere"):
        with pytest.raises(Conflict, match="task folder"):
            worker.upload_files(tmp_path / "up", destination=destination)
    for source in ("escape/etc/hostname", "../agent.token", "/etc/hostname"):
        with pytest.raises(Conflict, match="task folder"):
            worker.download_files(source, tmp_path / "down")
    assert not (tmp_path / "down").exists() or not any((tmp_path / "down").iterdir())
    worker.upload_files(tmp_path / "up", destination="~/practicus/task/deeper")  # Practicus's name for it
    worker.download_files("deeper", tmp_path / "back")
    assert (tmp_path / "back" / "x.txt").read_text() == "x"


def test_megabytes_go_both_ways_and_over_the_upload_limit_are_refused_before_sending(server, made, tmp_path):
    worker = create(server, made)
    worker.wait_until_ready(timeout=60)
    blob = secrets.token_bytes(3 * 1024 * 1024)
    write(tmp_path / "mb", "blob.bin", "").write_bytes(blob)
    worker.upload_files(tmp_path / "mb" / "blob.bin", destination="in")
    worker.download_files("in", tmp_path / "back")
    assert (tmp_path / "back" / "blob.bin").read_bytes() == blob
    big = write(tmp_path / "big", "noise.bin", "")
    big.write_bytes(secrets.token_bytes(200_000))
    server.client._upload_limit = 100_000  # the limit as the server would state it: a smaller server's
    try:
        with pytest.raises(InvalidInput, match="upload limit.*TASKYARD_MAX_UPLOAD_MB"):
            worker.upload_files(big.parent)
    finally:
        server.client._upload_limit = None


def test_another_user_can_neither_see_nor_use_it(server, made, tmp_path):
    worker = create(server, made)
    worker.wait_until_ready(timeout=60)
    other = server.user_client("someone" + secrets.token_hex(3))
    assert worker.name not in [w.name for w in get_region(other).worker_list]
    theirs = taskyard.Worker(worker.name, client=other)
    write(tmp_path, "t.py", "print('not yours')\n")
    with pytest.raises(NotFound):
        theirs.refresh()
    with pytest.raises(NotFound):
        theirs.upload_files(tmp_path / "t.py")
    with pytest.raises(NotFound):
        theirs.download_files(".", tmp_path / "stolen")
    with pytest.raises(NotFound):
        taskyard.submit("t.py", files_path=tmp_path, worker=worker.name, client=other)
    with pytest.raises(NotFound):
        theirs.terminate()
    assert worker.status is WorkerStatus.RUNNING
    assert worker.name in [w.name for w in get_region(server.client).worker_list]  # an admin sees everyone's
    private = Pool.create(pool_name(), max_workers=1, client=server.client)  # shared with no one
    with pytest.raises(InvalidInput, match="no pool"):
        taskyard.create_worker(pool=private.name, client=other)


def test_a_created_worker_counts_against_its_pool_and_the_next_one_waits_for_room(any_server, made, tmp_path):
    server = any_server
    pool = Pool.create(pool_name(), max_workers=1, client=server.client)
    first = create(server, made, pool=pool.name)
    first.wait_until_ready(timeout=60)
    second = create(server, made, pool=pool.name)
    write(tmp_path, "t.py", "print('queued')\n")
    task = taskyard.submit("t.py", files_path=tmp_path, pool=pool.name, client=server.client)
    time.sleep(2)
    assert second.status is WorkerStatus.PROVISIONING  # not started: the pool is full
    assert task.status is TaskStatus.IN_QUEUE
    first.terminate()
    second.wait_until_ready(timeout=60)  # the oldest request comes first
    assert task.status is TaskStatus.IN_QUEUE
    second.terminate()
    assert task.wait(timeout=60) is TaskStatus.SUCCESS


def test_get_or_create_gives_back_a_live_worker_made_alike(server, made):
    pool = Pool.create(pool_name(), max_workers=2, client=server.client)
    first = taskyard.get_or_create_worker(WorkerConfig(worker_size="X-Small"), pool=pool.name, client=server.client)
    made.append(first)
    again = taskyard.get_or_create_worker(WorkerConfig(worker_size="x-small"), pool=pool.name, client=server.client)
    assert again.name == first.name
    bigger = taskyard.get_or_create_worker(WorkerConfig(worker_size="Small"), pool=pool.name, client=server.client)
    made.append(bigger)
    assert bigger.name != first.name and bigger.size == "Small"
    first.terminate()
    wait_for(lambda: first.status.is_finished(), timeout=30)
    fresh = get_region(server.client).get_or_create_worker(WorkerConfig(worker_size="X-Small"), pool=pool.name)
    made.append(fresh)
    assert fresh.name not in (first.name, bigger.name)


def test_its_time_to_live_ends_it(server, made):
    worker = create(server, made, time_to_live="2s")
    assert worker.refresh().expires_at is not None
    wait_for(lambda: worker.status.is_finished(), timeout=30)
    assert "time to live" in (worker.refresh().reason or "")
    with pytest.raises(Conflict, match="Terminat"):
        worker.wait_until_ready(timeout=5)


def test_wait_until_ready_times_out_for_a_worker_that_cannot_start_yet(server, made):
    pool = Pool.create(pool_name(), max_workers=0, client=server.client)
    worker = create(server, made, pool=pool.name)
    with pytest.raises(TimedOut, match="still Provisioning"):
        worker.wait_until_ready(timeout=1)


def test_a_config_the_server_cannot_honour_is_refused_at_once(server):
    with pytest.raises(InvalidInput, match="worker_image"):
        taskyard.create_worker(WorkerConfig(worker_image="no-such-image"), client=server.client)
    with pytest.raises(InvalidInput, match="worker_size"):
        taskyard.create_worker(WorkerConfig(worker_size="Enormous"), client=server.client)


# -- the region -----------------------------------------------------------------------------------


def test_the_region_lists_the_servers_sizes_images_and_workers(server, made):
    region = region_factory({"service_url": "ignored"}, client=server.client)
    assert str(region) == f"taskyard region at {server.url}"
    sizes = region.worker_size_list
    assert [size.name for size in sizes] == [size.name for size in server.client.sizes().sizes]
    images = region.worker_image_list
    assert images[0].default and images[0].name == "python"
    assert {"python", "practicus"} <= {image.name for image in images}
    assert all("Python" in image.description for image in images)  # the host's, not a container image
    worker = region.create_worker(WorkerConfig(worker_image="practicus"))
    made.append(worker)
    assert worker.name in [w.name for w in region.worker_list] and worker.image == "practicus"


def test_region_lists_become_data_frames_where_pandas_is(server):
    sizes = get_region(server.client).worker_size_list
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(Unsupported, match="pip install pandas"):
            sizes.to_pandas()
        return
    assert list(sizes.to_pandas()["name"]) == [size.name for size in server.client.sizes().sizes]


@pytest.mark.parametrize("name", ["app_deployment_setting_list", "app_list", "model_list", "create_workspace"])
def test_practicus_region_names_that_do_not_fit_say_what_to_use(server, name):
    with pytest.raises(Unsupported, match="taskyard"):
        getattr(get_region(server.client), name)


def test_seed_002_region_cell_ported_says_what_to_use(sdk_env):
    cell = """import practicuscore as prt

# Connect to the default region configured on this workstation
region = prt.get_region()

# List deployment settings that can host our app
print("Deployment settings available to you:")
display(region.app_deployment_setting_list.to_pandas())
""".replace("import practicuscore as prt", "import taskyard as prt")
    with pytest.raises(Unsupported, match="does not host apps.*run_task"):
        exec(compile(cell, "seed-002", "exec"), {"display": print})


def test_uploading_a_path_that_does_not_exist_is_refused(server, made, tmp_path):
    worker = create(server, made)
    with pytest.raises(InvalidInput, match="does not exist"):
        worker.upload_files(tmp_path / "missing")


def test_the_readme_example_runs(server, tmp_path):
    root = Path(__file__).resolve().parent.parent
    section = (root / "README.md").read_text().split("### Workers of your own, and the region", 1)[1]
    code = "import taskyard\n" + section.split("```python\n", 1)[1].split("```", 1)[0]
    shutil.copytree(root / "examples", tmp_path / "examples")
    env = {**os.environ, "TASKYARD_URL": server.url, "TASKYARD_TOKEN": server.token}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr
    assert "Hello from simple task 1" in done.stdout
    assert (tmp_path / "copies" / "task.py").read_text() == (root / "examples" / "tasks" / "task.py").read_text()
    made = [w for w in server.client.workers() if w.keep and w.size == "X-Small" and w.task_id is None]
    for worker in made:  # the one get_or_create_worker made, as the example leaves it
        server.client.terminate_worker(worker.name)


def test_practicus_worker_names_that_do_not_fit_say_what_to_use(server, made):
    worker = create(server, made)
    with pytest.raises(Unsupported, match="upload_files.*run_task"):
        worker.load({"connection": "s3"})
    worker.wait_until_ready(timeout=60)
    with pytest.raises(Conflict, match="run one first"):  # a command needs a task's environment; files do not
        worker.exec("true")


def test_files_wait_for_no_task_while_one_runs(server, made, tmp_path):
    worker = create(server, made)
    worker.wait_until_ready(timeout=60)
    write(tmp_path / "tasks", "slow.sh", "echo up; sleep 30\n")
    task = taskyard.submit("slow.sh", files_path=tmp_path / "tasks", worker=worker, client=server.client)
    assert task.wait_for_status("In Progress", timeout=60)
    with pytest.raises(Conflict, match="a task is running on this worker"):
        worker.upload_files(tmp_path / "tasks" / "slow.sh")
    task.kill()

    def uploaded() -> bool:  # the agent lets go of the task a moment after reporting its end
        try:
            return bool(worker.upload_files(tmp_path / "tasks" / "slow.sh", destination="again"))
        except Conflict:
            return False

    wait_for(uploaded, timeout=10)
    assert worker.download_files("again", tmp_path / "back") == ["slow.sh"]


def test_its_startup_script_runs_before_each_of_its_tasks_and_a_task_config_goes_on_top(server, made, tmp_path):
    config = WorkerConfig(startup_script="echo ran >> setup_runs.txt", env_variables={"A": "worker", "B": "worker"})
    worker = create(server, made, config)
    write(tmp_path, "count.sh", 'echo "runs=$(wc -l < setup_runs.txt) A=$A B=$B"\n')
    assert worker.run_task("count.sh", files_path=tmp_path)[1]
    task = taskyard.submit("count.sh", files_path=tmp_path, worker=worker, client=server.client,
                           worker_config=WorkerConfig(env_variables={"B": "task"}))
    assert task.wait(timeout=60) is TaskStatus.SUCCESS, task.logs()
    assert task.logs().strip() == "runs=2 A=worker B=task"
