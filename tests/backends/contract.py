"""The contract every backend keeps (``taskyard.backends.base``), as tests that any backend reuses.

A backend's test module subclasses :class:`BackendContract` in a ``Test...`` class and supplies:

``backend`` (fixture)
    a new backend object over the ``data_dir`` fixture, as ``make_backend(<its name>, data_dir)``
    builds it;
``contract_server`` (fixture; module or class scope keeps it cheap)
    a running ``support.Server`` whose control plane starts its workers through this kind of
    backend, preferably with a short kill grace (:func:`start_control_plane` makes one);
``crash(handle)``
    make the worker die on its own, behind the backend's back (kill its main process, say);
``traces(backend, worker_name)``
    what of the worker still exists (folders, processes, machines...), as a set of descriptions;
``force_cleanup(backend, worker_name)``
    remove what ``traces`` would report, without going through the backend: the safety net run
    after every test, so that a broken ``terminate`` still leaves nothing running.

Workers that need no control plane are pointed at :data:`UNREACHABLE_URL`. Nothing listens there,
and the agent does not give up on a refused connection: ``taskyard.agent.protocol.Client.call``
retries connection errors with backoff for ``RETRY_FOR`` (600 s) before raising ``Unreachable``,
and only then do the agent's loop and heartbeat stop. So such an agent stays alive, quietly, for
far longer than any test here.

The tests that need a real task (processes the worker started) read process ids from this host's
``/proc``; a backend whose workers run elsewhere overrides :meth:`BackendContract.start_time`, or,
when no process of its workers can be seen from here, skips those two tests and checks what it
can see instead (``test_kubernetes.TestKubernetesBackendOnACluster``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

import taskyard
from taskyard import settings
from taskyard.backends import Backend, LaunchRequest, WorkerState, make_backend
from taskyard.config import WorkerConfig
from taskyard.server.db.models import WorkerRow
from taskyard.server.db.session import make_engine, make_sessionmaker, transaction
from taskyard.status import WorkerStatus

from support import Server, wait_for, write

UNREACHABLE_URL = "http://127.0.0.1:9"  # the discard port: nothing listens, connections are refused
STARTUP = 30.0  # seconds a worker may take to come up
GONE_SLACK = 15.0  # seconds past the kill grace for every process of a terminated worker to vanish

# A task that leaves a tree of processes behind it and prints their ids. Every descendant stays in
# the task's process group; the grandchild is orphaned (its parent exits), so it is no longer a
# descendant of the task at all. With CONTRACT_TASK_IGNORES_SIGTERM=1 the task itself ignores SIGTERM
# too (and so does everything it forks), so only SIGKILL stops any of it.
PROCESS_TREE_TASK = """\
import json, os, signal, time

if os.environ.get("CONTRACT_TASK_IGNORES_SIGTERM") == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def sleeper(ignore_sigterm=False, orphaned=False):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        if orphaned and os.fork() != 0:
            os._exit(0)  # the middle process goes; its child is reparented away from the task
        if ignore_sigterm:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        os.write(write, str(os.getpid()).encode())  # only once the handler is in place
        os.close(write)
        while True:
            time.sleep(60)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        reported = int(pipe.read())  # EOF once every copy of the write end is closed
    if orphaned:
        os.waitpid(pid, 0)
    return reported


pids = {
    "parent of the task": os.getppid(),
    "task": os.getpid(),
    "child": sleeper(),
    "child ignoring SIGTERM": sleeper(ignore_sigterm=True),
    "orphaned grandchild": sleeper(orphaned=True),
}
print("CONTRACT-PIDS " + json.dumps(pids), flush=True)
while True:
    time.sleep(60)
"""
# A startup script (run by the agent before the task) that never finishes, with a child of its own.
PROCESS_TREE_STARTUP_SCRIPT = """\
sleep 3600 &
echo "CONTRACT-PIDS {\\"parent of the startup script\\": $PPID, \\"startup script\\": $$, \\"its child\\": $!}"
wait
"""
PIDS_LINE = re.compile(r"^CONTRACT-PIDS (\{.*\})$", re.MULTILINE)


def new_worker_name() -> str:
    """A worker name no other test (nor another test run on this machine) uses."""
    return f"ct{os.getpid()}-{secrets.token_hex(4)}"


def make_request(
    backend: Backend,
    *,
    worker_name: str | None = None,
    agent_token: str | None = None,
    control_plane_url: str = UNREACHABLE_URL,
    size: str = "X-Small",
    image: str | None = None,
) -> LaunchRequest:
    return LaunchRequest(
        worker_name=worker_name or new_worker_name(),
        agent_token=agent_token or "ty_" + secrets.token_urlsafe(16),
        control_plane_url=control_plane_url,
        size=size,
        image=image or backend.default_image,
    )


def unknown_image(backend: Backend) -> str:
    image = "no-such-image"
    while image in backend.images:
        image += "-really"
    return image


def start_control_plane(home: Path, **env: str) -> Server:
    """A control plane of its own in ``home``, started as the conftest fixtures start theirs; ``.stop()`` it."""
    return Server(home, **env).start()


def kill_grace(server) -> float:
    """The kill grace ``server``'s control plane (and its agents) use."""
    value = server.env.get("TASKYARD_KILL_GRACE") or os.environ.get("TASKYARD_KILL_GRACE") or "5"
    return float(value)


def worker_handle(server, worker_name: str) -> dict:
    """The handle the control plane stored for a worker: the very one it polls and terminates it with.

    Read from the ``workers`` table through the project's own ORM model and engine settings, rather
    than rebuilt from the worker's folder: the handle is what the control plane hands the backend
    for every kind of backend, while ``<home>/workers/<name>/task.pgid`` is a detail of the local
    backend, exists only while a task runs, and names the task's process group but not the agent.
    The process ids these tests check do not come from either: the task prints them itself.
    """
    engine = make_engine(server.env.get("TASKYARD_DB_URL") or settings.db_url(server.home))
    try:
        sessions = make_sessionmaker(engine)

        def stored() -> str | None:
            with transaction(sessions) as session:
                return session.scalar(select(WorkerRow.handle).where(WorkerRow.name == worker_name))

        return json.loads(wait_for(stored, timeout=STARTUP))
    finally:
        engine.dispose()


def _proc_start_time(pid: int) -> int | None:
    """When process ``pid`` started (clock ticks since boot), or None when there is no such process.

    Zombies count as processes: one that is never reaped is a process that survived.
    """
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[19])  # field 22 of proc(5); fields[0] is field 3


def _proc_state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "gone"


class Leftovers:
    """Tasks and processes a test started through a control plane, stopped at teardown whatever happens."""

    def __init__(self) -> None:
        self.tasks: list[taskyard.Task] = []
        self.processes: dict[str, tuple[int, int]] = {}  # label -> (pid, start time)

    def clean(self, start_time: Callable[[int], int | None]) -> None:
        for task in self.tasks:
            with contextlib.suppress(Exception):
                name = task.refresh().worker_name
                if name is not None:
                    task.client.terminate_worker(name)
                else:
                    task.client.kill(task.id)
        for pid, start in self.processes.values():
            if start_time(pid) == start:  # still the process the test saw, not a newcomer with its pid
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


class BackendContract:
    """The tests every backend passes. See the module docstring for what a subclass supplies."""

    # -- what a concrete test class supplies -----------------------------------------------------

    def crash(self, handle: dict) -> None:
        raise NotImplementedError

    def traces(self, backend: Backend, worker_name: str) -> set[str]:
        raise NotImplementedError

    def force_cleanup(self, backend: Backend, worker_name: str) -> None:
        raise NotImplementedError

    def reopen(self, backend: Backend, data_dir: Path) -> Backend:
        """A new backend object of the same kind over the same data, as a restarted control plane builds."""
        return make_backend(backend.name, data_dir)

    def start_time(self, pid: int) -> int | None:
        """When process ``pid`` (as a task on the worker sees it) started; None once it is gone."""
        return _proc_start_time(pid)

    def seen_from_here(self, server, worker_name: str, pids: dict[str, int]) -> dict[str, int]:
        """The ids, as :meth:`start_time` takes them, of processes a task reported with its own ids.

        The same by default; a backend whose tasks have a PID namespace of their own maps them.
        """
        return pids

    # -- fixtures --------------------------------------------------------------------------------

    @pytest.fixture
    def data_dir(self, tmp_path: Path) -> Path:
        return tmp_path / "data"

    @pytest.fixture
    def launch_worker(self, backend: Backend) -> Iterator[Callable[..., tuple[LaunchRequest, dict]]]:
        """``launch_worker(**request_fields) -> (request, handle)``; every worker is stopped at teardown."""
        names: dict[str, None] = {}
        handles: list[dict] = []

        def launch(**fields) -> tuple[LaunchRequest, dict]:
            request = make_request(backend, **fields)
            names[request.worker_name] = None  # first: a launch that fails half-way is cleaned up too
            handle = backend.launch(request)
            handles.append(handle)
            return request, handle

        yield launch
        for handle in handles:
            with contextlib.suppress(Exception):
                backend.terminate(handle)
        for name in names:
            self.force_cleanup(backend, name)

    @pytest.fixture
    def leftovers(self) -> Iterator[Leftovers]:
        left = Leftovers()
        yield left
        left.clean(self.start_time)

    def _running(self, backend: Backend, handle: dict) -> None:
        wait_for(lambda: backend.poll(handle) is WorkerState.RUNNING, timeout=STARTUP)

    # -- images ----------------------------------------------------------------------------------

    def test_images_include_the_default_image(self, backend):
        assert backend.default_image in backend.images
        for image, description in backend.images.items():
            assert image and description.strip() and "\n" not in description, image

    # -- launch and poll -------------------------------------------------------------------------

    def test_launch_returns_a_json_handle_and_the_worker_comes_up(self, backend, launch_worker):
        _, handle = launch_worker()
        assert json.loads(json.dumps(handle)) == handle
        assert backend.poll(handle) in (WorkerState.STARTING, WorkerState.RUNNING)  # "not yet" is no error
        self._running(backend, handle)
        assert backend.poll(json.loads(json.dumps(handle))) is WorkerState.RUNNING

    def test_poll_says_gone_for_a_worker_that_died_on_its_own(self, backend, data_dir, launch_worker):
        request, handle = launch_worker()
        self._running(backend, handle)
        self.crash(handle)
        # The new object first: it is the one that cannot reap what the first one started.
        restarted = self.reopen(backend, data_dir)
        wait_for(lambda: restarted.poll(handle) is WorkerState.GONE, timeout=STARTUP)
        wait_for(lambda: backend.poll(handle) is WorkerState.GONE, timeout=STARTUP)
        backend.terminate(handle)  # a worker already gone: returns silently, and frees what is left
        assert backend.poll(handle) is WorkerState.GONE
        assert self.traces(backend, request.worker_name) == set()

    # -- terminate -------------------------------------------------------------------------------

    def test_terminate_makes_the_worker_gone_and_is_idempotent(self, backend, launch_worker):
        request, handle = launch_worker()
        self._running(backend, handle)
        backend.terminate(handle)
        assert backend.poll(handle) is WorkerState.GONE  # terminate blocks until the worker is gone
        assert self.traces(backend, request.worker_name) == set()
        backend.terminate(handle)
        assert backend.poll(handle) is WorkerState.GONE

    def test_terminate_works_from_a_new_backend_with_a_handle_from_json(self, backend, data_dir, launch_worker):
        request, handle = launch_worker()
        self._running(backend, handle)
        stored = json.dumps(handle)  # as the control plane keeps it in its database
        restarted = self.reopen(backend, data_dir)
        assert restarted.poll(json.loads(stored)) is WorkerState.RUNNING
        restarted.terminate(json.loads(stored))
        assert restarted.poll(json.loads(stored)) is WorkerState.GONE
        assert backend.poll(handle) is WorkerState.GONE
        assert self.traces(backend, request.worker_name) == set()
        restarted.terminate(json.loads(stored))

    # -- refused launches ------------------------------------------------------------------------

    def test_launch_with_an_unknown_image_raises_and_leaves_nothing(self, backend, launch_worker):
        name, image = new_worker_name(), unknown_image(backend)
        with pytest.raises(Exception, match=re.escape(image)):  # an error that names what was wrong
            launch_worker(worker_name=name, image=image)
        assert self.traces(backend, name) == set()

    def test_launching_a_worker_name_twice_raises_and_keeps_the_first(self, backend, launch_worker):
        request, handle = launch_worker()
        self._running(backend, handle)
        before = self._settled_traces(backend, request.worker_name)
        assert before
        # "Not idempotent: call it once per worker name": a second call must not start a second worker.
        with pytest.raises(Exception):  # noqa: B017 - the contract names no exception type
            launch_worker(worker_name=request.worker_name)
        assert backend.poll(handle) is WorkerState.RUNNING
        assert self.traces(backend, request.worker_name) == before

    def test_the_control_plane_refuses_an_unknown_image_before_any_launch(self, backend, contract_server):
        server, image = contract_server, unknown_image(backend)
        body = {
            "file_name": "task.py",
            "bundle_sha256": "0" * 64,
            "bundle_size": 1,
            "worker_config": {"worker_image": image},
        }
        response = server.client._http.post("/tasks", json=body)
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["field"] == "worker_config.worker_image" and image in error["message"]
        assert not [w for w in server.client.workers(include_ended=True) if w.image == image]

    # -- every process a worker started ----------------------------------------------------------

    def _start_process_tree(
        self, backend, server, folder: Path, leftovers: Leftovers, *, ignore_sigterm=False, in_startup_script=False
    ) -> str:
        """Have a kept worker of ``server`` start processes, in its task or in its startup script.

        Records them in ``leftovers`` and returns the worker's name.
        """
        task, reported_pids = self._submit_process_tree(
            server, folder, leftovers, ignore_sigterm=ignore_sigterm, in_startup_script=in_startup_script
        )
        pids = self.seen_from_here(server, task.refresh().worker_name, reported_pids)
        for label, pid in pids.items():
            start = self.start_time(pid)
            assert start is not None, f"{label} ({pid}) is not running"
            leftovers.processes[label] = (pid, start)
        name = task.worker_name
        assert server.client.worker(name).backend == backend.name
        return name

    def _submit_process_tree(
        self, server, folder: Path, leftovers: Leftovers, *, ignore_sigterm=False, in_startup_script=False
    ) -> tuple[taskyard.Task, dict[str, int]]:
        """Submit :data:`PROCESS_TREE_TASK` to a kept worker of ``server`` (recorded in ``leftovers``).

        Returns the task and the process ids it (or its startup script) printed, once printed.
        """
        write(folder, "tree.py", PROCESS_TREE_TASK)
        config = WorkerConfig(
            env_variables={"CONTRACT_TASK_IGNORES_SIGTERM": "1" if ignore_sigterm else "0"},
            startup_script=PROCESS_TREE_STARTUP_SCRIPT if in_startup_script else None,
        )
        task = taskyard.submit(
            "tree.py", files_path=folder, worker_config=config, terminate_on_completion=False, client=server.client
        )
        leftovers.tasks.append(task)

        def reported() -> dict[str, int] | None:
            found = PIDS_LINE.search(task.logs())
            if found is None and task.refresh().status.is_terminal():
                pytest.fail(
                    f"the task ended ({task.refresh().status.alias}) before its processes started:\n{task.logs()}"
                )
            return json.loads(found.group(1)) if found else None

        return task, wait_for(reported, timeout=60)  # the task has its worker by then

    def _settled_traces(self, backend: Backend, worker_name: str) -> set[str]:
        """The worker's traces once they stop changing (a worker may start more as it comes up)."""
        last: set[str] | None = None
        deadline = time.monotonic() + STARTUP
        while time.monotonic() < deadline:
            now = self.traces(backend, worker_name)
            if now == last:
                return now
            last = now
            time.sleep(0.3)
        raise AssertionError(f"the worker's traces kept changing: {last}")

    def _wait_gone(self, processes: dict[str, tuple[int, int]], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            alive = {
                label: f"{pid} ({_proc_state(pid)})"
                for label, (pid, start) in processes.items()
                if self.start_time(pid) == start
            }
            if not alive:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"still there {timeout:.0f} s after the worker was terminated: {alive}")
            time.sleep(0.05)

    def _terminated(self, server, name: str) -> None:
        timeout = kill_grace(server) + GONE_SLACK
        wait_for(lambda: server.client.worker(name).status is WorkerStatus.TERMINATED, timeout=timeout)

    @pytest.mark.parametrize(
        "in_startup_script, ignore_sigterm",
        [(False, False), (False, True), (True, False)],
        ids=["task-obeys-sigterm", "task-ignores-sigterm", "startup-script"],
    )
    def test_terminate_stops_every_process_the_worker_started(
        self, backend, contract_server, tmp_path, leftovers, in_startup_script, ignore_sigterm
    ):
        server = contract_server
        name = self._start_process_tree(
            backend,
            server,
            tmp_path / "task",
            leftovers,
            ignore_sigterm=ignore_sigterm,
            in_startup_script=in_startup_script,
        )
        handle = worker_handle(server, name)
        seen = self.reopen(backend, server.home)  # the server's data folder is its home
        assert seen.poll(handle) is WorkerState.RUNNING

        server.client.terminate_worker(name)
        self._wait_gone(leftovers.processes, kill_grace(server) + GONE_SLACK)
        self._terminated(server, name)
        assert seen.poll(handle) is WorkerState.GONE
        assert self.traces(seen, name) == set()

    @pytest.mark.parametrize("in_startup_script", [False, True], ids=["task", "startup-script"])
    def test_terminate_stops_what_the_worker_started_after_its_agent_died(
        self, backend, contract_server, tmp_path, leftovers, in_startup_script
    ):
        server = contract_server
        name = self._start_process_tree(
            backend, server, tmp_path / "task", leftovers, ignore_sigterm=True, in_startup_script=in_startup_script
        )
        handle = worker_handle(server, name)
        self.crash(handle)
        # What the agent started has lost its agent. The control plane may notice first (its
        # backend polls GONE) and terminate the worker itself; asking as well changes nothing.
        server.client.terminate_worker(name)
        self._wait_gone(leftovers.processes, kill_grace(server) + GONE_SLACK)
        self._terminated(server, name)
        assert self.traces(self.reopen(backend, server.home), name) == set()
