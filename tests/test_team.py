"""A shared server: the admin made on first start, users, tokens that expire, are changed or removed."""

from __future__ import annotations

import time

import httpx
import pytest

from taskyard.errors import Conflict, Forbidden, NotFound, Unauthorized
from taskyard.models import PoolSpec

from foreground import Foreground


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    server = Foreground(tmp_path_factory.mktemp("team"), "--max-workers", "1").start()
    yield server
    server.stop()


def test_first_start_makes_an_admin_and_shows_its_token_once(tmp_path):
    first = Foreground(tmp_path / "home").start()
    try:
        assert first.token is not None and first.client().me().is_admin
    finally:
        first.stop()
    again = Foreground(tmp_path / "home").start()
    try:
        assert again.token is None  # not shown again: only its hash is stored
        assert again.client(first.token).me().name == "admin"
    finally:
        again.stop()


def test_the_admin_token_can_be_given_in_a_file_or_the_environment(tmp_path):
    given = tmp_path / "admin-token"
    given.write_text("ty_" + "f" * 40 + "\n")
    server = Foreground(tmp_path / "a", "--admin-token-file", str(given)).start()
    try:
        assert server.token is None
        assert server.client("ty_" + "f" * 40).me().is_admin
    finally:
        server.stop()
    server = Foreground(tmp_path / "b", env={"TASKYARD_ADMIN_TOKEN": "ty_" + "e" * 40}).start()
    try:
        assert server.token is None and server.client("ty_" + "e" * 40).me().is_admin
    finally:
        server.stop()


def test_a_short_admin_token_is_refused_at_start(tmp_path):
    server = Foreground(tmp_path / "home", env={"TASKYARD_ADMIN_TOKEN": "short"})
    with pytest.raises(RuntimeError, match="at least 16 characters"):
        server.start()


def test_health_tells_the_pid_only_to_a_caller_with_a_token(team):
    bare = httpx.get(team.url + "/api/v1/health").json()
    assert bare["status"] == "ok" and "pid" not in bare
    wrong = httpx.get(team.url + "/api/v1/health", headers={"Authorization": "Bearer ty_nope"}).json()
    assert "pid" not in wrong
    known = httpx.get(team.url + "/api/v1/health", headers={"Authorization": f"Bearer {team.token}"}).json()
    assert known["pid"] == team.process.pid


def test_a_removed_user_token_stops_working_at_once(team):
    admin = team.client()
    bob = team.client(admin.add_user("bob").token)
    assert bob.me().name == "bob"  # now in the token cache
    admin.remove_user("bob")
    with pytest.raises(Unauthorized):
        bob.me()
    assert "bob" not in [user.name for user in admin.users()]
    with pytest.raises(Conflict, match="removed"):
        admin.add_user("bob")
    with pytest.raises(NotFound):
        admin.remove_user("bob")


def test_only_an_admin_removes_users_and_not_themselves(team):
    admin = team.client()
    carol = team.client(admin.add_user("carol").token)
    admin.add_user("dave")
    with pytest.raises(Forbidden):
        carol.remove_user("dave")
    with pytest.raises(Conflict, match="yourself"):
        admin.remove_user("admin")


def test_a_rotated_token_replaces_the_old_one_at_once(team):
    admin = team.client()
    old = admin.add_user("erin").token
    erin = team.client(old)
    assert erin.me().name == "erin"
    new = erin.rotate_token("erin").token  # a user changes their own
    assert new and new != old
    with pytest.raises(Unauthorized):
        erin.me()
    assert team.client(new).me().name == "erin"
    newer = admin.rotate_token("erin").token  # an admin changes anyone's
    with pytest.raises(Unauthorized):
        team.client(new).me()
    assert team.client(newer).me().name == "erin"


def test_a_user_cannot_change_another_users_token(team):
    admin = team.client()
    frank = team.client(admin.add_user("frank").token)
    with pytest.raises(Forbidden):
        frank.rotate_token("admin")


def test_a_token_with_an_expiry_stops_working_then(team):
    admin = team.client()
    info = admin.add_user("gina", expires_in=2)
    gina = team.client(info.token)
    assert info.token_expires_at is not None and gina.me().name == "gina"
    time.sleep(2.2)
    with pytest.raises(Unauthorized, match="expired"):
        gina.me()
    renewed = admin.rotate_token("gina", expires_in="1d")
    assert team.client(renewed.token).me().name == "gina"


@pytest.mark.parametrize("value", [0, -1, "Infinity", 1e300, True, [], {}, "soon"])
def test_an_expiry_out_of_range_is_a_422_naming_the_field(team, value):
    answer = httpx.post(
        team.url + "/api/v1/users",
        json={"name": "hal", "expires_in": value},
        headers={"Authorization": f"Bearer {team.token}"},
    )
    assert answer.status_code == 422 and answer.json()["error"]["field"] == "expires_in"


def test_a_server_refuses_more_warm_workers_than_its_limit(tmp_path):
    server = Foreground(tmp_path / "home", "--max-workers", "2", env={"TASKYARD_WARM_WORKERS": "3"})
    with pytest.raises(RuntimeError, match=r"warm_workers: 3 warm workers are more than max_workers \(2\)"):
        server.start()


def test_a_server_refuses_a_stored_pool_with_more_warm_workers_than_it_may_run(tmp_path):
    home = tmp_path / "home"
    first = Foreground(home, "--max-workers", "2", env={"TASKYARD_WARM_WORKERS": "0"}).start()
    try:
        first.client().create_pool(PoolSpec(name="warm", max_workers=2, warm_workers=2))
    finally:
        first.stop()
    again = Foreground(home, "--max-workers", "1", env={"TASKYARD_WARM_WORKERS": "0"})
    with pytest.raises(RuntimeError, match=r"pool 'warm' keeps 2 warm workers, more than its limit \(1\)"):
        again.start()
