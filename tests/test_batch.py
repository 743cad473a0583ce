"""taskyard.submit_many and POST /tasks/batch: many tasks of one folder, uploaded once, created in order."""

from __future__ import annotations

import secrets

import httpx
import pytest

import taskyard
from taskyard import TaskStatus
from taskyard.errors import InvalidInput
from taskyard.models import MAX_BATCH, PoolSpec, TaskSpec

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


def _parked_pool(client) -> str:
    """A pool of no workers, of this test's own: its tasks wait and are never started."""
    name = "parked-" + secrets.token_hex(3)
    client.create_pool(PoolSpec(name=name, max_workers=0))
    return name


def test_a_batch_stores_each_new_task_with_its_history_and_callback(any_server):
    client = any_server.client
    pool = _parked_pool(client)
    given = "batch-given-" + secrets.token_hex(3)
    specs = [
        TaskSpec(file_name="a.py", bundle_sha256="1" * 64, bundle_size=10, pool=pool),
        TaskSpec(file_name="b.py", bundle_sha256="1" * 64, bundle_size=10, pool=pool,
                 callback_url="http://127.0.0.1:9/done"),
        TaskSpec(file_name="c.py", bundle_sha256="1" * 64, bundle_size=10, pool=pool, task_id=given),
        TaskSpec(file_name="d.py", bundle_sha256="1" * 64, bundle_size=10),  # the default pool
    ]
    infos = client.submit_batch(specs)
    assert [info.file_name for info in infos] == ["a.py", "b.py", "c.py", "d.py"]
    assert infos[2].id == given and [info.pool for info in infos] == [pool, pool, pool, "default"]
    for info in infos:
        stored = client.task(info.id)
        assert stored.status is TaskStatus.WAITING_FOR_INPUT  # no such bundle was uploaded
        assert [change.status for change in stored.status_history] == [TaskStatus.WAITING_FOR_INPUT]
    assert client.callbacks(infos[1].id).url == "http://127.0.0.1:9/done"
    assert client.callbacks(infos[0].id).url is None


def test_a_batch_with_one_task_refused_stores_none_of_it(any_server):
    client = any_server.client
    pool = _parked_pool(client)
    newest = [task.id for task in client.list_tasks(limit=5).tasks]
    good = TaskSpec(file_name="a.py", bundle_sha256="2" * 64, bundle_size=10, pool=pool)
    bad = good.model_copy(update={"pool": "no-such-pool"})
    with pytest.raises(InvalidInput) as caught:
        client.submit_batch([good, good, bad, good])
    assert caught.value.field == "pool"
    assert [task.id for task in client.list_tasks(limit=5).tasks] == newest
