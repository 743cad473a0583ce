"""Hostile users against the API: what one user may not do to the server or to another user.

Each test is a probe a user could try with a plain token; it stays here so that it stays closed.
"""

from __future__ import annotations

import time

import httpx
import pytest

import taskyard
from taskyard.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from taskyard.status import TaskStatus

from foreground import Foreground
from support import write


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    server = Foreground(tmp_path_factory.mktemp("hostile-users"), "--max-workers", "2").start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def admin(team):
    return team.client()


@pytest.fixture(scope="module")
def alice(team, admin):
    return team.client(admin.add_user("alice").token)


@pytest.fixture(scope="module")
def bob(team, admin):
    return team.client(admin.add_user("bob").token)


def _pool(name: str, **fields) -> taskyard.models.PoolSpec:
    return taskyard.models.PoolSpec(name=name, **fields)


def test_a_user_cannot_make_a_pool(bob):
    with pytest.raises(Forbidden, match="only an admin"):
        bob.create_pool(_pool("bobs-own", max_workers=10, warm_workers=10))
    assert [pool.name for pool in bob.pools()] == ["default"]


def test_an_admin_pool_is_held_within_the_servers_limit(admin):
    with pytest.raises(InvalidInput, match=r"max_workers 10 is more than this server runs at once \(2\)") as over:
        admin.create_pool(_pool("big", max_workers=10))
    assert over.value.field == "max_workers"
    with pytest.raises(InvalidInput, match="warm_workers 2 is more than the pool's max_workers") as warm:
        admin.create_pool(_pool("warm", max_workers=1, warm_workers=2))
    assert warm.value.field == "warm_workers"
    with pytest.raises(InvalidInput, match="no user 'nobody'"):
        admin.create_pool(_pool("for-nobody", shared_with=["nobody"]))


def test_a_pool_is_seen_and_used_only_by_those_it_is_shared_with(team, admin, alice, bob, tmp_path):
    secret_env = {"POOL_ONLY": "alice-and-admins"}
    config = taskyard.WorkerConfig(env_variables=secret_env, startup_script="echo started > started.txt")
    admin.create_pool(_pool("alices", max_workers=1, worker_config=config, shared_with=["alice"]))

    assert "alices" in [pool.name for pool in alice.pools()]
    assert alice.pool("alices").worker_config.env_variables == secret_env
    assert [pool.name for pool in bob.pools()] == ["default"]  # its config is not shown to bob
    with pytest.raises(NotFound):
        bob.pool("alices")
    write(tmp_path, "hello.py", "import os\nprint(os.environ.get('POOL_ONLY'))\n")
    with pytest.raises(InvalidInput, match="no pool 'alices'; pools: default") as refused:
        taskyard.submit("hello.py", files_path=tmp_path, pool="alices", client=bob)
    assert refused.value.field == "pool"
    with pytest.raises(NotFound):
        bob.delete_pool("alices")
    with pytest.raises(Forbidden):
        alice.delete_pool("alices")

    task = taskyard.submit("hello.py", files_path=tmp_path, pool="alices", client=alice)
    assert task.wait(timeout=60) is TaskStatus.SUCCESS
    assert task.logs() == "alice-and-admins\n"
    admin.delete_pool("alices")


def test_a_pool_shared_with_everyone(admin, bob):
    admin.create_pool(_pool("everyones", max_workers=1, shared_with=["*"]))
    assert "everyones" in [pool.name for pool in bob.pools()]
    admin.delete_pool("everyones")


def test_another_users_task_id_tells_nothing_of_their_task(alice, bob, tmp_path):
    write(tmp_path, "a.py", "print('mine')\n")
    task_id = f"release-{time.monotonic_ns()}"
    taskyard.submit("a.py", files_path=tmp_path, task_id=task_id, client=alice)
    with pytest.raises(Conflict) as taken:
        taskyard.submit("a.py", files_path=tmp_path, task_id=task_id, client=bob)
    assert taken.value.message == f"task id {task_id!r} is taken; choose another task_id"
    with pytest.raises(NotFound):
        bob.task(task_id)



def test_your_own_task_id_again_is_the_same_task_or_a_409_that_says_it_is_yours(alice, tmp_path):
    write(tmp_path, "a.py", "print('mine')\n")
    task_id = f"nightly-{time.monotonic_ns()}"
    first = taskyard.submit("a.py", files_path=tmp_path, task_id=task_id, client=alice)
    assert taskyard.submit("a.py", files_path=tmp_path, task_id=task_id, client=alice).id == first.id
    with pytest.raises(Conflict) as other:
        taskyard.submit("a.py", files_path=tmp_path, task_id=task_id, time_to_live="5m", client=alice)
    assert other.value.message.startswith(f"your task {task_id!r} was submitted with other settings or files")


def test_health_gives_no_pid_to_strangers(team):
    answer = httpx.get(team.url + "/api/v1/health")
    assert answer.status_code == 200 and set(answer.json()) == {"status", "version", "max_upload_bytes"}


def test_a_user_cannot_add_remove_or_list_users(bob):
    for attempt in (lambda: bob.add_user("mallory", is_admin=True), lambda: bob.remove_user("alice"), bob.users):
        with pytest.raises(Forbidden):
            attempt()


def test_a_removed_users_token_is_dead_at_once(team, admin):
    mallory = team.client(admin.add_user("mallory").token)
    assert mallory.me().name == "mallory"
    admin.remove_user("mallory")
    with pytest.raises(Unauthorized):
        mallory.me()


def test_a_group_shared_pool_is_for_its_members_only_and_at_once(team, admin, alice, bob, tmp_path):
    admin.create_group("ml")
    admin.add_to_group("ml", "alice")
    config = taskyard.WorkerConfig(env_variables={"POOL_ONLY": "ml"})
    admin.create_pool(_pool("ml-pool", max_workers=1, worker_config=config, shared_with=["group:ml"]))
    assert alice.pool("ml-pool").worker_config.env_variables == {"POOL_ONLY": "ml"}
    assert "ml-pool" not in [pool.name for pool in bob.pools()]
    with pytest.raises(NotFound, match="no pool 'ml-pool'"):
        bob.pool("ml-pool")
    with pytest.raises(NotFound, match="no group 'ml'"):
        bob.group("ml")
    assert bob.groups() == []
    write(tmp_path, "hello.py", "print('hi')\n")
    with pytest.raises(InvalidInput, match="no pool 'ml-pool'; pools: default"):
        taskyard.submit("hello.py", files_path=tmp_path, pool="ml-pool", client=bob)
    for attempt in (
        lambda: bob.create_group("mine"),
        lambda: bob.add_to_group("ml", "bob"),
        lambda: bob.delete_group("ml"),
    ):
        with pytest.raises(Forbidden):
            attempt()
    task = taskyard.submit("hello.py", files_path=tmp_path, pool="ml-pool", client=alice)
    assert task.wait(timeout=60) is TaskStatus.SUCCESS

    admin.remove_from_group("ml", "alice")  # out of the group: the pool is gone for her at once
    with pytest.raises(NotFound):
        alice.pool("ml-pool")
    admin.add_to_group("ml", "alice")
    admin.delete_group("ml")  # a deleted group gives nothing, and the pool forgets it
    with pytest.raises(InvalidInput, match="no pool 'ml-pool'"):
        taskyard.submit("hello.py", files_path=tmp_path, pool="ml-pool", client=alice)
    assert admin.pool("ml-pool").shared_with == []
    with pytest.raises(InvalidInput, match="no group 'ml'"):
        admin.create_pool(_pool("for-no-group", shared_with=["group:ml"]))
    admin.delete_pool("ml-pool")
