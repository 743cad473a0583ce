"""taskyard.submit_many and POST /tasks/batch: many tasks of one folder, uploaded once, created in order."""

from __future__ import annotations

import httpx
import pytest

import taskyard
from taskyard import TaskStatus
from taskyard.errors import InvalidInput
from taskyard.models import MAX_BATCH

from support import EXAMPLES


def test_submit_many_runs_every_task_and_uploads_the_folder_once(sdk_env, tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "job.py").write_text("print('batch run')\n")
    tasks = taskyard.submit_many("job.py", folder, count=3)
    assert len({task.id for task in tasks}) == 3
    for task in tasks:
        assert task.wait(timeout=60) is TaskStatus.SUCCESS, task.id
        assert "batch run" in task.logs()


def test_submit_many_with_task_ids_finds_the_same_tasks_again(sdk_env):
    ids = ["batch-again-1", "batch-again-2"]
    first = taskyard.submit_many("task_1.py", EXAMPLES, task_ids=ids)
    again = taskyard.submit_many("task_1.py", EXAMPLES, task_ids=ids)
    assert [task.id for task in first] == [task.id for task in again] == ids
    assert all(task.wait(timeout=60) is TaskStatus.SUCCESS for task in first)


@pytest.mark.parametrize("kwargs", [{}, {"count": 0}, {"count": 2, "task_ids": ["only-one"]}])
def test_submit_many_refuses_a_count_that_does_not_add_up(sdk_env, kwargs):
    with pytest.raises(InvalidInput) as caught:
        taskyard.submit_many("task_1.py", EXAMPLES, **kwargs)
    assert caught.value.field == "count"


def test_a_batch_over_the_limit_is_refused_naming_the_field(server):
    spec = {"file_name": "task_1.py", "bundle_sha256": "0" * 64, "bundle_size": 10}
    answer = httpx.post(
        server.url + "/api/v1/tasks/batch",
        json={"tasks": [spec] * (MAX_BATCH + 1)},
        headers={"Authorization": f"Bearer {server.token}"},
    )
    assert answer.status_code == 422
    assert "tasks" in answer.text
