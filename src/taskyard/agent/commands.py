"""Orders a worker's owner sends to a kept worker: run a command, open a notebook server, open a shell.

The control plane hands them to the agent with its heartbeat's answer (``"commands"``); each is
carried out on a thread of its own, so heartbeats go on, and answered with
``POST /commands/{id}`` (``{"result": {...}}`` or ``{"error": "..."}``). They run where the
worker's last task ran: in its sandbox, its folder and its environment (see
:meth:`TaskRun.start_inside`). What they start for longer (a notebook server, a shell's door)
stops when the worker stops.
"""

from __future__ import annotations

import subprocess
import sys
import threading
from typing import TYPE_CHECKING

from . import files
from .doors import NotebookServer, ShellDoor
from .protocol import Refused, Unreachable
from .runner import folders

if TYPE_CHECKING:
    from .runner import TaskRun

OUTPUT_MAX = 1024 * 1024  # bytes of each stream an exec sends back; the rest is cut
EXEC_TIMEOUT = 60.0


class CommandFailed(Exception):
    """An order that cannot be carried out; its message goes back to whoever sent it."""


class WorkerCommands:
    def __init__(self, client, worker_dir, task_uid: int | None = None) -> None:
        self.client = client
        self.worker_dir = worker_dir
        self.task_uid = task_uid  # who the task's files belong to (None: the agent's own user)
        # Held while a task runs: no task process can then swap a path for a link while the agent moves files.
        self.between_tasks = threading.Lock()
        self.last_run: TaskRun | None = None  # the TaskRun of the worker's last task: where commands run
        self.notebook: NotebookServer | None = None
        self._doors: list[ShellDoor] = []
        self._lock = threading.Lock()
        self._closed = False

    def start(self, order: dict) -> None:
        threading.Thread(target=self._carry_out, args=(order,), name=f"command-{order['id']}", daemon=True).start()

    def _carry_out(self, order: dict) -> None:
        keep: NotebookServer | None = None
        body: dict[str, object]
        try:
            result, keep = self._do(order)
            body = {"result": result}
        except CommandFailed as exc:
            body = {"error": str(exc)}
        except Exception as exc:  # anything else is reported too: the sender must not wait in vain
            body = {"error": f"the agent could not carry out {order.get('kind')!r}: {exc!r}"}
        try:
            self.client.call("POST", f"/commands/{order['id']}", body)
        except (Refused, Unreachable) as exc:
            print(f"taskyard agent: could not answer a command: {exc}", file=sys.stderr)
        if keep is not None:
            # A sandbox dies with the thread that started it (bwrap's --die-with-parent): this one stays.
            keep.process.wait()

    def _do(self, order: dict) -> tuple[dict, NotebookServer | None]:
        """The order's result, and the notebook server it started, if it started one."""
        if order.get("kind") in ("upload", "download"):
            return self._files(order), None  # no task need have run: the task folder is the worker's
        run = self.last_run
        if run is None:
            raise CommandFailed("no task has run on this worker yet, so there is no task environment to run "
                                "commands in: run one first (worker.run_task); files go in and out without one "
                                "(worker.upload_files, worker.download_files)")
        kind = order.get("kind")
        if kind == "exec":
            return execute(run, order["argv"], order.get("stdin"), float(order.get("timeout") or EXEC_TIMEOUT)), None
        if kind == "notebook":
            server, started = self._notebook(run)
            return {"url": server.url}, server if started else None
        if kind == "shell":
            return self._shell(run, bool(order.get("tty"))), None
        raise CommandFailed(f"unknown command {kind!r}")

    def _files(self, order: dict) -> dict:
        if not self.between_tasks.acquire(blocking=False):
            raise CommandFailed("a task is running on this worker: files go in and out between its tasks")
        try:
            return self._move_files(order)
        finally:
            self.between_tasks.release()

    def _move_files(self, order: dict) -> dict:
        task_dir = folders(self.worker_dir)[0]
        try:
            if order["kind"] == "upload":
                names = files.put(task_dir, order["archive"], order.get("destination") or ".", self.task_uid,
                                  order.get("max_unpack_bytes"))
                return {"names": names}
            return {"archive": files.get(task_dir, order.get("source") or ".", int(order["max_bytes"]))}
        except (ValueError, OSError) as exc:
            raise CommandFailed(str(exc)) from None

    def _notebook(self, run) -> tuple[NotebookServer, bool]:
        """The worker's notebook server, and whether it was started now."""
        with self._lock:
            if self._closed:
                raise CommandFailed("the worker is stopping")
            if self.notebook is not None and self.notebook.alive():
                return self.notebook, False
            if self.notebook is not None:
                self.notebook.stop()
            self.notebook = NotebookServer.start(run, self.worker_dir / "notebook.log")
            return self.notebook, True

    def _shell(self, run, tty: bool) -> dict:
        door = ShellDoor.open(run, tty)
        with self._lock:
            if self._closed:
                door.close()
                raise CommandFailed("the worker is stopping")
            self._doors = [d for d in self._doors if not d.done] + [door]
        return {"address": door.address, "key": door.key}

    def close(self) -> None:
        """Stop the notebook server and every shell: the worker is ending."""
        with self._lock:
            self._closed = True
            notebook, doors = self.notebook, self._doors
            self.notebook, self._doors = None, []
        if notebook is not None:
            notebook.stop()
        for door in doors:
            door.close()


def execute(run, argv: list[str], stdin: str | None, timeout: float) -> dict:
    """Run ``argv`` where the task ran; its exit code and what it printed (cut at ``OUTPUT_MAX``)."""
    if not argv:
        raise CommandFailed("no command given")
    try:
        process = run.start_inside(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise CommandFailed(f"could not start {argv[0]!r}: {exc}") from None
    try:
        out, err = process.communicate((stdin or "").encode(), timeout=timeout)
        timed_out = False
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        timed_out = True
    return {"exit_code": process.returncode, "stdout": run.masked_text(out[:OUTPUT_MAX]),
            "stderr": run.masked_text(err[:OUTPUT_MAX]), "timed_out": timed_out,
            "truncated": len(out) > OUTPUT_MAX or len(err) > OUTPUT_MAX}
