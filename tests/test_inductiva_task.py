"""The Inductiva ``Task`` methods and ``taskyard.tasks.get_tasks``, on a real control plane."""

from __future__ import annotations

import io
import time

import pytest

import taskyard
from taskyard import TaskStatus
from taskyard.errors import InvalidInput, NotFound

from support import write

MAKER = (
    "import os, pathlib, time\nout = pathlib.Path(os.environ['TASKYARD_OUTPUT_DIR'])\n"
    "(out / 'sub').mkdir()\n(out / 'sub' / 'a.txt').write_text('12345')\n(out / 'b.txt').write_text('xy')\n"
    "time.sleep(0.3)\n"
)


def submit(server, tmp_path, name: str, code: str, **options) -> taskyard.Task:
    write(tmp_path, name, code)
    return taskyard.submit(file_name=name, files_path=tmp_path, client=server.client, **options)


def test_status_waits_times_and_summary(server, tmp_path):
    task = submit(server, tmp_path, "make.py", MAKER)
    assert task.wait_for_status("In Progress", timeout=30) is True
    assert task.get_status() in (TaskStatus.IN_PROGRESS, TaskStatus.FINALIZING, TaskStatus.SUCCESS)
    assert task.wait_for_status(TaskStatus.SUCCESS, timeout=30) is True
    assert task.get_position_in_queue() is None
    computation, total = task.get_computation_time(), task.get_total_time()
    assert computation is not None and 0.3 <= computation <= total
    out = io.StringIO()
    task.print_summary(file=out)
    text = out.getvalue()
    assert f"Task:             {task.id}" in text and "Status:           Success" in text
    assert "Computation time:" in text and "Outputs:" in text


def test_wait_for_a_status_the_task_never_reaches(server, tmp_path):
    task = submit(server, tmp_path, "fail.py", "raise SystemExit(3)\n")
    assert task.wait_for_status("success", timeout=30) is False
    assert task.get_status() is TaskStatus.FAILED
    with pytest.raises(ValueError):
        task.wait_for_status("no such status", timeout=1)


def test_wait_for_status_gives_up_after_its_timeout(server, tmp_path):
    task = submit(server, tmp_path, "sleep.py", "import time\ntime.sleep(60)\n")
    started = time.monotonic()
    assert task.wait_for_status(TaskStatus.SUCCESS, timeout=0.5) is False
    assert time.monotonic() - started < 10
    task.kill()


def test_output_info_lists_files_and_sizes_and_download_picks_some(server, tmp_path):
    task = submit(server, tmp_path / "src", "make.py", MAKER)
    with pytest.raises(NotFound):
        task.get_output_info()  # not yet: it is still running
    assert task.wait(timeout=30) is TaskStatus.SUCCESS
    info = task.get_output_info()
    assert sorted((f.name, f.size) for f in info.files) == [("b.txt", 2), ("sub/a.txt", 5)]
    assert (info.total_size, info.partial) == (7, False) and info.archive_size > 0
    target = task.download_outputs(["sub/a.txt"], output_dir=tmp_path / "some")
    assert target == tmp_path / "some"
    assert [p.relative_to(target).as_posix() for p in sorted(target.rglob("*")) if p.is_file()] == ["sub/a.txt"]
    with pytest.raises(NotFound, match="nope.txt"):
        task.download_outputs(["nope.txt"], output_dir=tmp_path / "none")
    assert not any(p.is_file() for p in (tmp_path / "none").rglob("*"))
    with pytest.raises(TypeError):
        task.download_outputs(str(tmp_path / "x"))  # type: ignore[arg-type]


def test_get_tasks_newest_first_and_by_status(server, tmp_path):
    client = server.user_client(f"inductiva-{time.monotonic_ns()}")
    write(tmp_path, "ok.py", "print('ok')\n")
    write(tmp_path, "bad.py", "raise SystemExit(1)\n")
    ids = []
    for name in ("ok.py", "bad.py", "ok.py"):
        task = taskyard.submit(file_name=name, files_path=tmp_path, client=client)
        task.wait(timeout=30)
        ids.append(task.id)
    recent = taskyard.tasks.get_tasks(last_n=2, client=client)
    assert [t.id for t in recent] == ids[::-1][:2]
    assert all(isinstance(t, taskyard.tasks.Task) for t in recent)
    assert [t.id for t in taskyard.tasks.get_tasks(10, status="Failed", client=client)] == [ids[1]]
    assert [t.id for t in taskyard.tasks.get_tasks(10, status=TaskStatus.SUCCESS, client=client)] == [ids[2], ids[0]]
    with pytest.raises(InvalidInput):
        taskyard.tasks.get_tasks(status="Sleeping", client=client)


def test_metadata_is_merged_kept_and_checked(server, tmp_path):
    task = submit(server, tmp_path, "ok.py", "print('ok')\n")
    assert task.get_metadata() == {}
    task.set_metadata({"experiment": "a", "run": "1"})
    assert task.wait(timeout=30) is TaskStatus.SUCCESS
    task.set_metadata({"run": "2"})  # after the end too
    assert taskyard.Task(task.id, client=server.client).get_metadata() == {"experiment": "a", "run": "2"}
    with pytest.raises(InvalidInput):
        task.set_metadata({f"k{i}": "v" for i in range(99)})  # 101 keys once merged
    with pytest.raises(InvalidInput):
        task.set_metadata({"": "empty key"})
    other = server.user_client(f"meta-{time.monotonic_ns()}")
    with pytest.raises(NotFound):
        taskyard.Task(task.id, client=server.client).client.metadata("no-such-task")
    with pytest.raises(NotFound):
        other.set_metadata(task.id, {"x": "y"})
