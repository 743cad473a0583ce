"""The local backend: the backend contract, and what is particular to a worker that is a folder and a process group."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from taskyard.backends import Backend, WorkerState, make_backend
from taskyard.sdk import submit
from taskyard.status import TaskStatus

from contract import BackendContract, start_control_plane
from support import Server, cwd_of, processes_in, seen_from_here, wait_for, write


@pytest.fixture(scope="module")
def contract_server(tmp_path_factory) -> Iterator[Server]:
    """A control plane of this module's own (its backend is the local one), with a kill grace of 1 s."""
    server = start_control_plane(tmp_path_factory.mktemp("local-control-plane") / "home", TASKYARD_KILL_GRACE="1")
    yield server
    server.stop()


class TestLocalBackend(BackendContract):
    @pytest.fixture
    def backend(self, data_dir: Path) -> Iterator[Backend]:
        backend = make_backend("local", data_dir)
        yield backend
        backend.close()

    def crash(self, handle: dict) -> None:
        os.kill(handle["pid"], signal.SIGKILL)  # the agent only: what it started lives on

    def traces(self, backend: Backend, worker_name: str) -> set[str]:
        found = {f"process {pid}" for pid in processes_in(backend.root / worker_name)}
        folder = backend.root / worker_name
        if folder.exists():
            found.add(f"folder {folder}")
        return found

    def seen_from_here(self, server, worker_name: str, pids: dict[str, int]) -> dict[str, int]:
        return seen_from_here(server.home / "workers" / worker_name, pids)

    def force_cleanup(self, backend: Backend, worker_name: str) -> None:
        for pid in processes_in(backend.root / worker_name):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(backend.root / worker_name, ignore_errors=True)

    # -- local only ---------------------------------------------------------------------------------

    def test_the_worker_folder_lives_as_long_as_the_worker(self, backend, data_dir, launch_worker):
        request, handle = launch_worker()
        folder = Path(handle["dir"])
        assert folder == data_dir / "workers" / request.worker_name
        assert folder.is_dir()
        backend.terminate(handle)
        assert not folder.exists()

    def test_the_agent_calls_the_url_of_the_request_with_its_token(self, backend, recorder, launch_worker, monkeypatch):
        monkeypatch.setenv("TASKYARD_AGENT_URL", "http://parent-agent.invalid")  # the request's values win
        monkeypatch.setenv("TASKYARD_AGENT_TOKEN", "parent-agent-token")
        request, handle = launch_worker(control_plane_url=recorder.url + "/some/prefix")
        wait_for(lambda: {"GET", "POST"} <= {method for method, _, _ in recorder.seen})
        for method, path, authorization in list(recorder.seen):
            assert path.startswith("/some/prefix/api/v1/agent/"), (method, path)
            assert authorization == f"Bearer {request.agent_token}", (method, path)
        assert cwd_of(handle["pid"]) == handle["dir"]
        backend.terminate(handle)
        assert backend.poll(handle) is WorkerState.GONE

    def test_a_task_sees_no_setting_of_the_control_plane(self, contract_server, tmp_path):
        """The control plane's own settings (its token, home, database) never reach a worker."""
        write(tmp_path, "env.py", "import os\nprint(sorted(k for k in os.environ if k.startswith('TASKYARD_')))\n")
        task = submit("env.py", tmp_path, client=contract_server.client)
        assert task.wait(timeout=60) is TaskStatus.SUCCESS
        expected = ['TASKYARD_OUTPUT_DIR', 'TASKYARD_TASK_ID', 'TASKYARD_WORKER_DIR', 'TASKYARD_WORKER_NAME']
        assert task.logs().strip() == str(expected)
        assert any(key.startswith("TASKYARD_") for key in contract_server.env)  # there were some to leak

    def test_agents_outlive_their_zygote_and_a_dead_zygote_is_started_again(self, backend, launch_worker):
        first_request, first = launch_worker()
        zygote = backend._zygote._process
        assert os.getsid(first["pid"]) == first["pid"] != os.getsid(zygote.pid)  # a session of its own
        assert cwd_of(first["pid"]) == first["dir"]  # set up before launch returned
        zygote.kill()
        zygote.wait()
        assert backend.poll(first) is WorkerState.RUNNING
        _, second = launch_worker()  # through a new zygote
        assert backend._zygote._process.pid != zygote.pid
        assert backend.poll(second) is WorkerState.RUNNING
        backend.terminate(first)
        assert self.traces(backend, first_request.worker_name) == set()

    def test_the_zygote_never_holds_a_workers_token_and_the_token_file_is_gone(self, backend, recorder, launch_worker):
        request, handle = launch_worker(control_plane_url=recorder.url)
        wait_for(lambda: recorder.seen)  # the agent is up: it has read its token
        token = request.agent_token.encode()
        assert not (Path(handle["dir"]) / "agent.token").exists()
        assert _in_memory(handle["pid"], token), "the agent's memory was not read (the check could not fail)"
        assert not _in_memory(backend._zygote._process.pid, token)

    def test_a_reused_pid_is_neither_running_nor_terminated(self, backend, launch_worker):
        _, handle = launch_worker()
        backend.terminate(handle)
        # As if the OS had given the dead agent's pid to another session leader (after a reboot, or
        # on a busy host): the same handle, now naming a process this worker never started.
        stranger = subprocess.Popen(
            [sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True, stdin=subprocess.DEVNULL
        )
        try:
            stale = {**handle, "pid": stranger.pid}
            assert backend.poll(stale) is WorkerState.GONE
            backend.terminate(stale)
            assert stranger.poll() is None, "terminate killed a process its worker never started"
        finally:
            stranger.kill()
            stranger.wait()


def _in_memory(pid: int, needle: bytes) -> bool:
    """Whether ``needle`` is anywhere in the writable memory of process ``pid`` (we are root, or its user)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            span, perms = line.split()[:2]
            if not perms.startswith("rw"):
                continue
            start, end = (int(part, 16) for part in span.split("-"))
            with contextlib.suppress(OSError, ValueError, OverflowError):
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
    return False


class _Recorder(http.server.ThreadingHTTPServer):
    """Answers every agent call with ``{}`` ("nothing yet") and remembers who called what."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _RecordingHandler)
        self.url = f"http://127.0.0.1:{self.server_address[1]}"
        self.seen: list[tuple[str, str, str | None]] = []

    def handle_error(self, request, client_address) -> None:
        pass  # an agent killed mid-call is expected here


class _RecordingHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append((self.command, self.path, self.headers.get("Authorization")))
        time.sleep(0.1)  # keep the agent from spinning
        body = json.dumps({}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = _answer

    def log_message(self, format, *args) -> None:
        pass


@pytest.fixture
def recorder() -> Iterator[_Recorder]:
    server = _Recorder()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def test_a_new_worker_is_pinned_beside_the_newest_not_beside_the_task_just_given(monkeypatch) -> None:
    """Two warm workers hold a core each; the oldest is given the task, and its replacement starts on the
    other core (the newest worker's, still idle), not on the core where the task has just begun."""
    from taskyard.backends.local.limits import Cores

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    cores = Cores()
    assert [cores.take(name, 1) for name in ("first", "second")] == [(0,), (1,)]
    assert cores.take("replacement", 1) == (1,)  # "first" runs the task on core 0
    cores.release("first")
    assert cores.take("next", 1) == (0,)  # the least used core comes first still
    assert cores.take("big", 2) == (0, 1)
