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

from contract import BackendContract, start_control_plane
from support import Server, wait_for


def _environ(pid: int) -> dict[str, str] | None:
    """The environment process ``pid`` was started with; None if it is gone or not ours to read.

    A process is briefly without one while it execs (``Popen`` may return by then), so an empty
    answer from a process that is neither a zombie nor a kernel thread is asked again.
    """
    deadline = time.monotonic() + 2
    while True:
        try:
            with open(f"/proc/{pid}/environ", "rb") as source:
                raw = source.read()
        except OSError:
            return None
        if raw or not _execing(pid) or time.monotonic() > deadline:
            break
        time.sleep(0.005)
    pairs = (entry.decode(errors="replace").partition("=") for entry in raw.split(b"\0") if entry)
    return {key: value for key, _, value in pairs}


def _execing(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return False
    kernel_thread = int(fields[6]) & 0x00200000  # PF_KTHREAD in field 9, flags
    return fields[0] != "Z" and not kernel_thread


def _processes_of(worker_name: str) -> list[int]:
    """Processes on this host started for ``worker_name``: its agent, its task and whatever that forked.

    The local backend gives the agent ``TASKYARD_WORKER_NAME``, and the agent passes it on to its
    task; a zombie's environment can no longer be read, and it holds nothing but its pid.
    """
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            env = _environ(int(entry))
            if env is not None and env.get("TASKYARD_WORKER_NAME") == worker_name:
                found.append(int(entry))
    return found


@pytest.fixture(scope="module")
def contract_server(tmp_path_factory) -> Iterator[Server]:
    """A control plane of this module's own (its backend is the local one), with a kill grace of 1 s."""
    server = start_control_plane(tmp_path_factory.mktemp("local-control-plane") / "home", TASKYARD_KILL_GRACE="1")
    yield server
    server.stop()


class TestLocalBackend(BackendContract):
    @pytest.fixture
    def backend(self, data_dir: Path) -> Backend:
        return make_backend("local", data_dir)

    def crash(self, handle: dict) -> None:
        os.kill(handle["pid"], signal.SIGKILL)  # the agent only: what it started lives on

    def traces(self, backend: Backend, worker_name: str) -> set[str]:
        found = {f"process {pid}" for pid in _processes_of(worker_name)}
        folder = backend.root / worker_name
        if folder.exists():
            found.add(f"folder {folder}")
        return found

    def force_cleanup(self, backend: Backend, worker_name: str) -> None:
        for pid in _processes_of(worker_name):
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

    def test_the_agent_gets_only_the_four_settings_it_needs(self, backend, launch_worker, monkeypatch):
        for key, value in {
            "TASKYARD_URL": "http://parent.invalid",
            "TASKYARD_TOKEN": "parent-token",
            "TASKYARD_HOME": "/parent/home",
            "TASKYARD_DB_URL": "sqlite:////parent/db",
            "TASKYARD_MAX_WORKERS": "99",
            "TASKYARD_TASK_ID": "parent-task",
            # the four the agent needs, set here too: the request's values must win
            "TASKYARD_AGENT_URL": "http://parent-agent.invalid",
            "TASKYARD_AGENT_TOKEN": "parent-agent-token",
            "TASKYARD_WORKER_NAME": "parent-worker",
            "TASKYARD_WORKER_DIR": "/parent/worker",
        }.items():
            monkeypatch.setenv(key, value)
        request, handle = launch_worker(control_plane_url="http://127.0.0.1:9/some/prefix")
        env = _environ(handle["pid"])
        assert env is not None
        assert {key: value for key, value in env.items() if key.startswith("TASKYARD_")} == {
            "TASKYARD_AGENT_URL": request.control_plane_url,
            "TASKYARD_AGENT_TOKEN": request.agent_token,
            "TASKYARD_WORKER_NAME": request.worker_name,
            "TASKYARD_WORKER_DIR": handle["dir"],
        }

    def test_the_agent_calls_the_url_of_the_request_with_its_token(self, backend, recorder, launch_worker):
        request, handle = launch_worker(control_plane_url=recorder.url + "/some/prefix")
        wait_for(lambda: {"GET", "POST"} <= {method for method, _, _ in recorder.seen})
        for method, path, authorization in list(recorder.seen):
            assert path.startswith("/some/prefix/api/v1/agent/"), (method, path)
            assert authorization == f"Bearer {request.agent_token}", (method, path)
        backend.terminate(handle)
        assert backend.poll(handle) is WorkerState.GONE

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
