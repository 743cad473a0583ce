"""Hostile tasks against processes and identity: other processes, root, tokens, escaping children, the network.

Each test runs a real task of bob, a non-admin user, whose code goes for one thing and prints what
it got; the test asserts it got nothing, and shows from the host that the thing was there to get.
"""

from __future__ import annotations

import contextlib
import os
import secrets

import pytest

from taskyard import TaskStatus as S

from hostile import REFUSED, cmdline, comm, host_uid, processes_of, release, reported, result, run, task_process
from support import cwd_of, environ_of, wait_for, write

# -- other processes -------------------------------------------------------------------------------

PROCESSES = """
import os
from probe import attempt, read, report
me = os.getpid()
pids = sorted(int(entry) for entry in os.listdir("/proc") if entry.isdigit())
hosts = dict(pair.split("=") for pair in os.environ["HOST_PIDS"].split(","))
report(
    me=me,
    cmdlines={pid: attempt(lambda: read(f"/proc/{pid}/cmdline", 4096).replace(b"\\0", b" ").decode()) for pid in pids},
    environ={pid: attempt(lambda: read(f"/proc/{pid}/environ")) for pid in pids if pid != me},
    mem={pid: attempt(lambda: open(f"/proc/{pid}/mem", "rb").close()) for pid in pids if pid != me},
    hosts={name: {
        "seen": os.path.exists(f"/proc/{pid}"),
        "environ": attempt(lambda: read(f"/proc/{pid}/environ")),
        "mem": attempt(lambda: open(f"/proc/{pid}/mem", "rb").close()),
        "signal": attempt(lambda: os.kill(int(pid), 0)),
    } for name, pid in hosts.items()},
)
"""


def test_a_task_sees_and_reaches_no_process_but_its_own(plane, bob, alice, tmp_path):
    """A task's /proc holds only its own few processes; it can neither read nor signal the server,
    the zygote, alice's agent or alice's task, though all of them run on the host meanwhile."""
    hosts = {
        "server": plane.pid,
        "zygote": _zygote(plane),
        "alice_agent": _agent(alice.folder),
        "alice_task": alice.pid,
    }
    assert environ_of(alice.pid)["TASKYARD_TASK_ID"] == alice.task.id  # alive, and alice's
    task = run(bob, tmp_path, PROCESSES, HOST_PIDS=",".join(f"{name}={pid}" for name, pid in hosts.items()))
    assert task.wait(timeout=60) is S.SUCCESS
    found = result(task)
    inside = {int(pid): line for pid, line in found["cmdlines"].items()}
    assert len(inside) <= 3 and max(inside) < 10, inside
    assert "-u attack.py" in inside[found["me"]]
    for marker in ("taskyard.agent", "taskyard server", "neighbour", "sleep"):
        assert not any(marker in line for line in inside.values()), (marker, inside)
    assert set(found["environ"].values()) <= REFUSED, found["environ"]  # pid 1: bwrap's, as root
    assert set(found["mem"].values()) <= REFUSED, found["mem"]
    for name, seen in found["hosts"].items():
        assert seen == {
            "seen": False,
            "environ": "FileNotFoundError",
            "mem": "FileNotFoundError",
            "signal": "ProcessLookupError",
        }, (name, hosts[name], seen)


def _zygote(plane) -> int:
    workers = str(plane.home / "workers")
    return wait_for(
        lambda: next(
            (pid for pid in _all_pids() if "taskyard.agent.zygote" in cmdline(pid) and cwd_of(pid) == workers), None
        )
    )


def _agent(worker_folder) -> int:
    found = [pid for pid in _all_pids() if cwd_of(pid) == str(worker_folder)]
    assert len(found) == 1, found
    return found[0]


def _all_pids() -> list[int]:
    return [int(entry) for entry in os.listdir("/proc") if entry.isdigit()]


# -- identity ------------------------------------------------------------------------------------

IDENTITY = """
import os
from probe import attempt, hold, report
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
report(
    ids=[os.getuid(), os.geteuid(), os.getgid(), os.getegid()],
    groups=os.getgroups(),
    caps={name: int(status[name], 16) for name in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")},
    become_root=attempt(lambda: os.setuid(0)),
)
hold()
"""


def test_a_task_runs_as_an_unprivileged_user_of_its_worker(plane, bob, alice, tmp_path):
    """No root and no capability inside; the host sees the same non-root uid (no user namespace
    maps it), and not the uid of alice's task."""
    task = run(bob, tmp_path, IDENTITY)
    found = reported(task)
    uid = found["ids"][0]
    assert uid != 0 and found["ids"] == [uid] * 4 and found["groups"] == []
    assert found["caps"] == dict.fromkeys(["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"], 0)
    assert found["become_root"] == "PermissionError"
    assert host_uid(task_process(task.id)) == uid
    assert host_uid(alice.pid) not in (0, uid)
    release(plane, task)
    assert task.wait(timeout=60) is S.SUCCESS


# -- tokens --------------------------------------------------------------------------------------

HARVEST = """
import os, re, urllib.error, urllib.request
from probe import hold, report
TOKEN = re.compile(rb"ty_[A-Za-z0-9_-]{20,}")


def tokens_in(path):
    if not os.path.isfile(path):  # a pipe or a socket: nothing to read, and it could block
        return set()
    try:
        with open(path, "rb") as source:
            return set(TOKEN.findall(source.read(10_000_000)))
    except OSError:
        return set()


def candidates():
    found = set(TOKEN.findall(" ".join(os.environ.values()).encode()))
    own = [".", os.environ["TASKYARD_OUTPUT_DIR"], os.environ["HOME"], os.environ["TASKYARD_WORKER_DIR"], "/tmp"]
    for top in own:
        for parent, _, names in os.walk(top):
            for name in names:
                found |= tokens_in(os.path.join(parent, name))
    for entry in os.listdir("/proc"):  # every pid, and self
        found |= tokens_in(f"/proc/{entry}/environ") | tokens_in(f"/proc/{entry}/cmdline")
    for guess in os.environ["GUESSES"].split(":"):
        found |= tokens_in(guess)
    return sorted(token.decode() for token in found)


def status(path, token):
    request = urllib.request.Request(os.environ["PLANE_URL"] + path, headers={"Authorization": "Bearer " + token})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


report(answers={token: [status("/api/v1/users", token), status("/api/v1/agent/next?wait=0", token)]
                for token in candidates()})
hold()
"""


def test_no_token_a_task_can_find_opens_the_api(plane, bob, tmp_path):
    """Every token-like string a task can read (its folders, environment, /proc, guessed paths)
    is refused by the admin API and the agent API; the worker's own token file is gone."""
    decoy = "ty_decoy" + secrets.token_hex(12)  # shows that the search finds tokens and the calls are answered
    write(tmp_path, "notes.txt", f"token: {decoy}\n")
    guesses = [plane.home / "token", plane.home / "taskyard.db", plane.home / "server.json"]
    assert plane.token in (plane.home / "token").read_text()
    task = run(bob, tmp_path, HARVEST, PLANE_URL=plane.url, GUESSES=":".join(map(str, guesses)))
    answers = reported(task)["answers"]
    worker = plane.home / "workers" / task.worker_name
    assert (worker / "agent.log").exists() and not (worker / "agent.token").exists()
    release(plane, task)
    assert task.wait(timeout=60) is S.SUCCESS
    assert answers[decoy] == [401, 401]
    assert not [token for token, codes in answers.items() if 200 in codes], answers


# -- children that try to outlive their task -----------------------------------------------------

ESCAPERS = """
import os, subprocess
from probe import hold, report
subprocess.Popen(["sleep", "90"], start_new_session=True)
if os.fork() == 0:  # a daemon: a new session, a second fork, and the middle one gone
    os.setsid()
    if os.fork() == 0:
        os.execvp("sleep", ["sleep", "91"])
    os._exit(0)
os.wait()
report(started=True)
hold(float(os.environ["HOLD"]))
"""


def _sleepers(task_id: str) -> list[int]:
    return [pid for pid in processes_of(task_id) if comm(pid) == "sleep"]


def _none_left(task_id: str) -> None:
    with contextlib.suppress(AssertionError):
        wait_for(lambda: not _sleepers(task_id), timeout=10)
    assert _sleepers(task_id) == [], "children of the task outlived it"


@pytest.mark.parametrize("keep", [False, True], ids=["worker-ends", "worker-kept"])
def test_escaped_children_die_when_their_task_ends(plane, bob, tmp_path, keep):
    """A child in a session of its own and a double-forked daemon are stopped when the task exits 0,
    even on a kept worker, whose agent goes on."""
    task = run(bob, tmp_path, ESCAPERS, keep=keep, HOLD="30")
    reported(task)
    wait_for(lambda: len(_sleepers(task.id)) == 2)  # both running, outside the task's session
    release(plane, task)
    assert task.wait(timeout=60) is S.SUCCESS
    _none_left(task.id)
    if keep:
        plane.client.terminate_worker(task.worker_name)


def test_escaped_children_die_when_a_kept_worker_is_terminated(plane, bob, tmp_path):
    """Terminating a kept worker while its task runs stops the task's escaped children too."""
    task = run(bob, tmp_path, ESCAPERS, keep=True, HOLD="120")
    reported(task)
    wait_for(lambda: len(_sleepers(task.id)) == 2)
    plane.client.terminate_worker(task.worker_name)
    assert task.wait(timeout=60) is S.MACHINE_TERMINATED_BY_USER
    _none_left(task.id)


# -- the network ---------------------------------------------------------------------------------

NETWORK = """
import os, socket, urllib.request
from probe import attempt, report
report(
    interfaces=[name for _, name in socket.if_nameindex()],
    server=attempt(lambda: urllib.request.urlopen(os.environ["PLANE_URL"] + "/api/v1/health", timeout=5).status),
)
"""


def test_without_network_a_task_reaches_nothing(plane, bob, tmp_path):
    """With network=False a task has only a loopback of its own: the control plane is out of reach."""
    cut = run(bob, tmp_path / "cut", NETWORK, config={"network": False}, PLANE_URL=plane.url)
    joined = run(bob, tmp_path / "joined", NETWORK, PLANE_URL=plane.url)
    assert cut.wait(timeout=60) is S.SUCCESS and joined.wait(timeout=60) is S.SUCCESS
    assert result(joined)["server"] == "got 200"  # the same task reaches it with the network
    found = result(cut)
    assert found["interfaces"] == ["lo"]
    assert not found["server"].startswith("got"), found
