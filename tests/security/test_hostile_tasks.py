"""Hostile tasks against files: the control plane's token, database and blobs, other workers' folders, the host.

Each test runs a real task of bob, a non-admin user, whose code goes for one thing and prints what
it got; the test asserts it got nothing, and shows from the host that the thing was there to get.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

import pytest

import taskyard
from taskyard import TaskStatus as S

from hostile import REFUSED, release, reported, result, run

REPO = Path(taskyard.__file__).resolve().parents[2]

# -- the control plane's secrets -------------------------------------------------------------------

TOKEN_GUESSES = """
import os
from probe import attempt, read, report
home = os.environ["PLANE_HOME"]
report(
    by_path=attempt(lambda: read(home + "/token")),
    relative=attempt(lambda: read("../../../token")),
    own_home_default=attempt(lambda: read(os.path.expanduser("~/.taskyard/token"))),
    server_user_default=attempt(lambda: read(os.environ["SERVER_USER_HOME"] + "/.taskyard/token")),
)
"""


def test_a_task_cannot_read_the_admin_token(plane, bob, tmp_path):
    """The admin token is hidden from a task: by its path, relative to the task's folder, and where
    a default home would keep it."""
    token = plane.home / "token"
    assert token.read_text().strip() == plane.token  # there, and the admin's
    task = run(bob, tmp_path, TOKEN_GUESSES, PLANE_HOME=str(plane.home), SERVER_USER_HOME=str(Path.home()))
    assert task.wait(timeout=60) is S.SUCCESS
    assert os.path.normpath(plane.home / "workers" / task.worker_name / "task" / "../../../token") == str(token)
    found = result(task)
    assert set(found.values()) <= REFUSED, found


DATABASE = """
import json, os, urllib.request
from probe import attempt, read, report
with urllib.request.urlopen(os.environ["PLANE_URL"] + "/api/v1/health", timeout=10) as answer:
    told = json.load(answer).get("pid")  # the server tells its pid only to a caller with a token
pid = int(os.environ["PLANE_PID"])  # so the test says it, to look for the server's process all the same
db = os.environ["PLANE_HOME"] + "/taskyard.db"
report(
    server_pid=pid,
    pid_told=told,
    server_seen=os.path.exists(f"/proc/{pid}"),
    by_path=sorted({attempt(lambda: read(db + suffix)) for suffix in ("", "-wal", "-shm")}),
    fds=attempt(lambda: os.listdir(f"/proc/{pid}/fd")),
    by_fd=sorted({attempt(lambda: read(f"/proc/{pid}/fd/{fd}")) for fd in range(64)}),
)
"""


def test_a_task_cannot_read_the_database_by_path_nor_through_the_servers_open_files(plane, bob, tmp_path):
    """The SQLite file is hidden, and the server's process (so its open files) is not in a task's /proc."""
    db = plane.home / "taskyard.db"
    assert db.read_bytes()[:16] == b"SQLite format 3\0"
    server_fds = [int(fd) for fd in os.listdir(f"/proc/{plane.pid}/fd") if _link(plane.pid, fd) == str(db)]
    assert server_fds and max(server_fds) < 64  # the server holds it open, at an fd the task tries
    task = run(bob, tmp_path, DATABASE, PLANE_URL=plane.url, PLANE_HOME=str(plane.home), PLANE_PID=str(plane.pid))
    assert task.wait(timeout=60) is S.SUCCESS
    found = result(task)
    assert found["server_pid"] == plane.pid and found["pid_told"] is None  # not told to a task without a token
    assert found["server_seen"] is False
    assert set(found["by_path"]) <= REFUSED, found
    assert found["fds"] in REFUSED
    assert set(found["by_fd"]) <= REFUSED, found


def _link(pid: int, fd: str) -> str | None:
    try:
        return os.readlink(f"/proc/{pid}/fd/{fd}")
    except OSError:
        return None


# -- other users' files --------------------------------------------------------------------------

NEIGHBOURS = """
import os
from probe import attempt, read, report
home, secret = os.environ["PLANE_HOME"], os.environ["ALICE_FILE"]
report(
    own_worker=os.environ["TASKYARD_WORKER_NAME"],
    workers=attempt(lambda: sorted(os.listdir(home + "/workers"))),
    alice_file=attempt(lambda: read(secret)),
    alice_folder=attempt(lambda: os.listdir(os.path.dirname(secret))),
    alice_worker=attempt(lambda: os.listdir(os.path.dirname(os.path.dirname(secret)))),
    blobs=attempt(lambda: os.listdir(home + "/blobs")),
)
"""


def test_a_task_cannot_see_another_workers_folder_nor_the_blobs(plane, bob, alice, tmp_path):
    """Of the workers' folders a task sees only its own; alice's files and the uploaded bundles are hidden."""
    assert alice.secret.read_text() == "alice's data"
    assert any((plane.home / "blobs").rglob("*.tar.gz"))  # every user's uploaded files
    task = run(bob, tmp_path, NEIGHBOURS, PLANE_HOME=str(plane.home), ALICE_FILE=str(alice.secret))
    assert task.wait(timeout=60) is S.SUCCESS
    found = result(task)
    assert alice.task.worker_name not in found["workers"]
    assert found["workers"] in REFUSED | {f"got {[found['own_worker']]!r}"}
    for attack in ("alice_file", "alice_folder", "alice_worker", "blobs"):
        assert found[attack] in REFUSED, (attack, found[attack])


# -- the host's files ----------------------------------------------------------------------------

WRITES = """
import os
from probe import attempt, report

def put(folder):
    path = os.path.join(folder, "probe-" + os.environ["MARK"])
    with open(path, "w") as out:
        out.write("bob was here")
    return path

own = [".", os.environ["TASKYARD_OUTPUT_DIR"], os.environ["HOME"], "/tmp"]
report(
    outside={folder: attempt(lambda: put(folder)) for folder in os.environ["OUTSIDE"].split(":")},
    own={folder: attempt(lambda: put(folder)) for folder in own},
)
"""


def test_a_task_writes_in_its_own_folders_only(plane, bob, tmp_path):
    """The host is read-only to a task (system folders, the repository, /var/tmp); its own folders
    and its /tmp it may write."""
    mark = secrets.token_hex(4)
    outside = ["/etc", "/usr", "/work", str(REPO), "/var/tmp", str(plane.home.parent)]
    task = run(bob, tmp_path, WRITES, MARK=mark, OUTSIDE=":".join(outside))
    assert task.wait(timeout=60) is S.SUCCESS
    found = result(task)
    left = [path for folder in outside if (path := Path(folder, f"probe-{mark}")).exists()]
    for path in [*left, Path("/tmp", f"probe-{mark}")]:
        path.unlink(missing_ok=True)  # a hole (or an unsandboxed /tmp): tidy up before saying so
    assert left == []
    assert set(found["outside"].values()) <= REFUSED | {"OSError"}, found["outside"]  # OSError: read-only
    assert all(value.startswith("got ") for value in found["own"].values()), found["own"]


PRIVATE_TMP = """
import os
from probe import hold, report
with open("/tmp/" + os.environ["MARK"], "w") as out:
    out.write("bob's")
report(written=os.path.exists("/tmp/" + os.environ["MARK"]))
hold()
"""

LOOK_IN_TMP = """
import os
from probe import report
report(seen=os.path.exists("/tmp/" + os.environ["MARK"]))
"""


def test_tmp_is_private_to_each_task(plane, bob, alice_client, tmp_path):
    """A file bob's task writes in /tmp is neither in the host's /tmp nor in the /tmp of alice's task meanwhile."""
    mark = "taskyard-private-" + secrets.token_hex(4)
    writer = run(bob, tmp_path / "bob", PRIVATE_TMP, MARK=mark)
    assert reported(writer) == {"written": True}
    looker = run(alice_client, tmp_path / "alice", LOOK_IN_TMP, MARK=mark)
    assert looker.wait(timeout=60) is S.SUCCESS
    assert writer.info.status is S.IN_PROGRESS  # alice looked while bob's file was there
    on_host = Path("/tmp", mark)
    leaked = on_host.exists()
    on_host.unlink(missing_ok=True)  # a hole: tidy up before saying so
    assert not leaked
    assert result(looker) == {"seen": False}
    release(plane, writer)
    assert writer.wait(timeout=60) is S.SUCCESS


# -- modes on the host ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "mode"),
    [
        pytest.param(".", 0o700, id="home"),
        pytest.param("workers", 0o700, id="workers"),
        pytest.param("taskyard.db", 0o600, id="database"),
        pytest.param("token", 0o600, id="token"),
    ],
)
def test_the_control_planes_files_are_its_users_alone(plane, alice, name, mode):
    """Even unsandboxed, no other user of the host may read the home, the workers' folders, the
    database or the token."""
    path = plane.home / name
    assert stat.S_IMODE(path.stat().st_mode) == mode, f"{path}: {oct(stat.S_IMODE(path.stat().st_mode))}"
