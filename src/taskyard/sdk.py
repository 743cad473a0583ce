"""The SDK: ``run_task``, ``submit``, ``Task`` and ``Worker``, with the Practicus AI signatures."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO, cast

from taskyard import bundle, callbacks, notebook_task, task_files
from taskyard.client import Client, default_client
from taskyard.config import WorkerConfig, worker_config_beside
from taskyard.errors import Conflict, InvalidInput, NotFound, TimedOut, Unsupported
from taskyard.models import (
    ExecRequest,
    ExecResult,
    OutputFiles,
    PoolInfo,
    PoolSpec,
    SizeInfo,
    StatusChange,
    TaskInfo,
    TaskSpec,
    WorkerInfo,
    check_file_name,
)
from taskyard.status import TaskStatus, WorkerStatus


def submit(
    file_name: str,
    files_path: str | Path | None = None,
    worker_config: WorkerConfig | None = None,
    terminate_on_completion: bool = True,
    capture_task_output: bool = True,
    task_id: str | None = None,
    worker: Worker | str | None = None,
    pool: Pool | str | None = None,
    time_to_live: str | float | None = None,
    max_retries: int = 0,
    resubmit_on_preemption: bool = False,
    client: Client | None = None,
    python_venv_name: str | None = None,
    parameters: dict | None = None,
    execution_timeout: str | float | None = None,
    callback_url: str | None = None,
    callback_url_token: str | None = None,
    as_notebook: bool = False,
) -> Task:
    """Start a task and return at once. ``files_path`` (default: the current folder) is uploaded.

    ``time_to_live`` ("1h30m" or seconds) stops a task that runs longer (Task Timed Out);
    ``max_retries`` / ``resubmit_on_preemption`` run it again on a fresh worker when its worker is
    lost or reclaimed; ``pool`` sends it to a named pool of workers; ``python_venv_name`` runs it
    with a virtual environment of the worker's host (``~/.venv/NAME``). Without ``worker_config``,
    a ``<task>_worker.json`` or ``default_worker.json`` beside the task file is used, if there is one
    (not for a task sent to a kept ``worker``). A notebook task (``.ipynb``) takes ``parameters``
    (injected after its cell tagged ``parameters``) and ``execution_timeout`` (seconds a cell may
    run); a file that is not a notebook is refused before anything is uploaded. With ``callback_url``,
    the server POSTs the task's result there when it ends (``callback_url_token`` as its bearer token).
    ``capture_task_output=False`` keeps the task's output out of its captured log (nothing is
    streamed, ``Task.logs()`` shows none of it) but not lost: it goes, secrets masked, to the
    worker's own log, which ``Worker.get_logs()`` and ``taskyard workers logs NAME`` show while the
    worker lives (keep it with ``terminate_on_completion=False`` to read it afterwards). With
    ``as_notebook``, a ``.py`` in jupytext's percent format (``# %%`` cells) runs as a notebook, with
    the same options and outputs (the worker's Python needs ``taskyard[notebooks]``, which brings jupytext).
    """
    folder = Path(files_path) if files_path is not None else Path.cwd()
    _check_task_file(folder, file_name)
    if as_notebook and not file_name.endswith(notebook_task.SCRIPT_SUFFIX):
        raise InvalidInput(f"as_notebook runs a .py script as a notebook; {file_name!r} is not one", field="file_name")
    _check_parameters(parameters)
    _check_callback(callback_url, callback_url_token)
    if worker_config is None and worker is None:
        worker_config = worker_config_beside(folder, file_name)
    _check_requirements_file(folder, worker_config)
    client = client or default_client()
    with bundle.pack(folder, max_bytes=client.upload_limit()) as packed:
        spec = TaskSpec(
            task_id=task_id,
            file_name=file_name,
            worker_config=worker_config or WorkerConfig(),
            capture_task_output=capture_task_output,
            terminate_on_completion=terminate_on_completion,
            worker=worker.name if isinstance(worker, Worker) else worker,
            pool=(pool.name if isinstance(pool, Pool) else pool) or "default",
            time_to_live=cast("float | None", time_to_live),  # a "1h30m" is made seconds by TaskSpec's validator
            max_retries=max_retries,
            resubmit_on_preemption=resubmit_on_preemption,
            python_venv_name=python_venv_name,
            parameters=parameters,
            execution_timeout=cast("float | None", execution_timeout),
            callback_url=callback_url,
            callback_url_token=callback_url_token,
            as_notebook=as_notebook,
            bundle_sha256=packed.sha256,
            bundle_size=packed.size,
        )
        info = client.submit(spec)
        if info.upload_required:
            info = client.upload_bundle(info.id, packed.path)
    return Task(info.id, client=client, info=info)


def _check_task_file(folder: Path, file_name: str) -> None:
    try:
        check_file_name(file_name)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="file_name") from None
    if not (folder / file_name).is_file():
        raise InvalidInput(f"task file {file_name!r} not found in {folder}", field="file_name")
    if file_name.endswith(notebook_task.SUFFIX):
        try:
            notebook_task.check_notebook(folder / file_name)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="file_name") from None


def _check_parameters(parameters: dict | None) -> None:
    try:
        notebook_task.check_parameters(parameters)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="parameters") from None


def _check_callback(url: str | None, token: str | None) -> None:
    try:
        if url is not None:
            callbacks.check_url(url)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="callback_url") from None
    try:
        callbacks.check_token(token)
    except ValueError as exc:
        raise InvalidInput(str(exc), field="callback_url_token") from None


def _check_requirements_file(folder: Path, config: WorkerConfig | None) -> None:
    name = config.python_requirements if config is not None else None
    if isinstance(name, str) and not (folder / name).is_file():
        field = "worker_config.python_requirements"
        raise InvalidInput(f"requirements file {name!r} not found in {folder}", field=field)


def run_task(
    file_name: str,
    files_path: str | Path | None = None,
    worker_config: WorkerConfig | None = None,
    terminate_on_completion: bool = True,
    capture_task_output: bool = True,
    task_id: str | None = None,
    client: Client | None = None,
    python_venv_name: str | None = None,
    **options,
) -> tuple[Worker, bool]:
    """Run a task on a fresh worker, print its output as it comes, and return ``(worker, success)``.

    The worker is terminated afterwards unless ``terminate_on_completion=False``. ``python_venv_name``
    runs a ``.py`` with the interpreter of that virtual environment of the worker's host
    (``~/.venv/NAME``). With ``capture_task_output=False`` nothing is printed here: the output goes
    to the worker's own log, shown by ``worker.get_logs()`` while the worker lives. Other keyword
    arguments (``pool``, ``time_to_live``, ``max_retries``...) are those of :func:`submit`.
    """
    task = submit(
        file_name,
        files_path,
        worker_config,
        terminate_on_completion=terminate_on_completion,
        capture_task_output=capture_task_output,
        task_id=task_id,
        client=client,
        python_venv_name=python_venv_name,
        **options,
    )
    status = task.wait(print_logs=capture_task_output)
    return Worker(task.worker_name or "", client=task.client), status is TaskStatus.SUCCESS


def worker_sizes(client: Client | None = None) -> list[SizeInfo]:
    """The worker sizes the server offers (for ``WorkerConfig(worker_size=...)``), in its order.

    Each says what it gives (cpu, memory, gpu), whether it is the default, and whether the
    server's host can hold it (``fits``; ``why`` not, if it cannot).
    """
    return (client or default_client()).sizes().sizes


class Task:
    """A task on the control plane. ``Task(id)`` re-attaches to it from any process."""

    def __init__(self, task_id: str, *, client: Client | None = None, info: TaskInfo | None = None) -> None:
        self.id = task_id
        self.client = client or default_client()
        self._info = info or self.client.task(task_id)

    def __repr__(self) -> str:
        return f"Task({self.id!r}, status={self._info.alias!r})"

    def refresh(self) -> TaskInfo:
        self._info = self.client.task(self.id)
        return self._info

    @property
    def info(self) -> TaskInfo:
        return self.refresh()

    @property
    def status(self) -> TaskStatus:
        return self.refresh().status

    @property
    def status_history(self) -> list[StatusChange]:
        return self.refresh().status_history

    @property
    def worker_name(self) -> str | None:
        return self._info.worker_name or self.refresh().worker_name

    @property
    def exit_code(self) -> int | None:
        return self.refresh().exit_code

    @property
    def position_in_queue(self) -> int | None:
        """1 if this task starts next in its pool, 2 after that...; None once it is no longer queued."""
        return self.refresh().position_in_queue

    def is_terminal(self) -> bool:
        return self.status.is_terminal()

    def is_running(self) -> bool:
        return self.status.is_running()

    def is_failed(self) -> bool:
        return self.status.is_failed()

    def wait(self, timeout: float | None = None, *, print_logs: bool = False) -> TaskStatus:
        """Block until the task ends (or ``timeout`` passes); the task goes on if this process dies."""
        if print_logs:
            return self._follow(sys.stdout, sys.stderr, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 30.0 if deadline is None else max(0.0, min(30.0, deadline - time.monotonic()))
            self._info = self.client.wait(self.id, timeout=left)
            if self._info.status.is_terminal() or (deadline is not None and time.monotonic() >= deadline):
                return self._info.status

    def _follow(self, out: TextIO, err: TextIO, timeout: float | None) -> TaskStatus:
        deadline = None if timeout is None else time.monotonic() + timeout
        for chunk_stream, text in self.stream_logs(deadline=deadline):
            target = out if chunk_stream == "stdout" else err
            target.write(text)
            target.flush()
        return self._info.status if self._info.status.is_terminal() else self.refresh().status

    def stream_logs(self, *, after: int = 0, deadline: float | None = None) -> Iterator[tuple[str, str]]:
        """Yield ``(stream, text)`` as the task prints, until it has ended and all is read."""
        while True:
            wait = 30.0 if deadline is None else max(0.0, min(30.0, deadline - time.monotonic()))
            page = self.client.logs(self.id, after=after, wait=wait)
            self._info = self._info.model_copy(update={"status": page.status, "worker_name": page.worker_name})
            for chunk in page.chunks:
                yield chunk.stream, chunk.text
            after = page.last_seq
            if page.done or (deadline is not None and time.monotonic() >= deadline):
                return

    def logs(self, max_bytes: int = 100 * 1024 * 1024) -> str:
        """Everything the task has printed so far (stdout and stderr, in the order they came)."""
        return self.client.tail(self.id, max_bytes)

    def kill(self, wait: bool = True, timeout: float = 60) -> TaskStatus:
        """Kill the task: at once if it has not started, else SIGTERM then SIGKILL after the grace."""
        self._info = self.client.kill(self.id)
        return self.wait(timeout) if wait else self._info.status

    @contextmanager
    def sync_context(self) -> Iterator[Task]:
        """Inside this block, Ctrl+C or an exception kills the task; plain ``wait()`` does not."""
        try:
            yield self
        except BaseException:
            self.kill(wait=False)
            raise

    # -- the Inductiva names ----------------------------------------------------------------------

    def get_status(self) -> TaskStatus:
        """The task's status now (asks the server)."""
        return self.status

    def get_position_in_queue(self) -> int | None:
        """1 if the task starts next in its pool, 2 after that...; None once it has left the queue."""
        return self.position_in_queue

    def wait_for_status(self, status: TaskStatus | str, timeout: float | None = None, *, poll: float = 0.2) -> bool:
        """Block until the task has reached ``status`` (now or earlier in its history): True.

        False if it ends without reaching it, or ``timeout`` seconds pass first. ``status`` is a
        TaskStatus or any spelling of one (``"In Progress"``, ``"in_progress"``).
        """
        wanted = status if isinstance(status, TaskStatus) else TaskStatus.from_alias(status)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            info = self.refresh()
            if wanted in {change.status for change in info.status_history} or info.status is wanted:
                return True
            if info.status.is_terminal() or (deadline is not None and time.monotonic() >= deadline):
                return False
            time.sleep(poll)

    def set_metadata(self, metadata: dict[str, str]) -> None:
        """Add these keys to the task's metadata (a key given again is replaced), in any status.

        Keys are 1-64 characters, values strings of up to 4096; a task holds at most 100 keys.
        """
        self.client.set_metadata(self.id, metadata)

    def get_metadata(self) -> dict[str, str]:
        """The task's metadata: every key set so far ({} if none)."""
        return self.client.metadata(self.id)

    def get_output_info(self) -> OutputFiles:
        """The files of the task's outputs with their sizes, listed by the server without downloading.

        Raises NotFound while the task has no outputs (before it ends, or if it wrote none).
        """
        return self.client.output_files(self.id)

    def list_files(self) -> list[str]:
        """The task's files: ``stdout.txt`` and ``stderr.txt`` (what it printed on each stream), then
        the files of its outputs once it has them (see :meth:`get_output_info` for their sizes)."""
        return task_files.names(self)

    def tail_files(
        self, files: Sequence[str] | None = None, lines: int = 10, follow: bool = False, *, file: TextIO | None = None
    ) -> None:
        """Print the last ``lines`` lines of each of ``files`` (names as :meth:`list_files` gives them;
        default: all). With ``follow``, go on printing what the task prints to ``stdout.txt`` /
        ``stderr.txt`` until it ends. A name it does not have raises NotFound."""
        task_files.tail(self, files, lines, follow, file or sys.stdout)

    def get_computation_time(self) -> float | None:
        """Seconds the task has spent In Progress (so far, if it still runs); None if it never ran."""
        spans = [change for change in self.refresh().status_history if change.status is TaskStatus.IN_PROGRESS]
        if not spans:
            return None
        return sum(_seconds(change.started_at, change.ended_at) for change in spans)

    def get_total_time(self) -> float:
        """Seconds from submission to the task's end (or to now, if it has not ended)."""
        info = self.refresh()
        return _seconds(info.created_at, info.finished_at)

    def print_summary(self, file: TextIO | None = None) -> None:
        """Print the task's id, file, status, worker, times and outputs, one per line."""
        out = file or sys.stdout
        for label, value in self._summary_lines():
            print(f"{label + ':':<18}{value}", file=out)

    def _summary_lines(self) -> list[tuple[str, str]]:
        info = self.refresh()
        computation = self.get_computation_time()
        return [
            ("Task", info.id),
            ("File", info.file_name),
            ("Status", info.alias + (f" ({info.reason})" if info.reason else "")),
            ("Worker", info.worker_name or "-"),
            ("Computation time", "-" if computation is None else f"{computation:.1f} s"),
            ("Total time", f"{_seconds(info.created_at, info.finished_at):.1f} s"),
            ("Outputs", _outputs_line(info)),
        ]

    def download_outputs(
        self, filenames: Sequence[str] | None = None, output_dir: str | os.PathLike[str] | None = None
    ) -> Path:
        """Unpack the task's outputs into ``output_dir`` (default: the current folder) and return where.

        Partial outputs of a task that did not succeed go to ``output_dir/partial/``. With
        ``filenames`` (names as :meth:`get_output_info` gives them) only those files are written;
        a name the outputs do not hold raises NotFound and writes nothing.
        """
        if isinstance(filenames, (str, os.PathLike)):
            raise TypeError("filenames is a list of output file names; pass the folder as output_dir=")
        dest = Path(output_dir if output_dir is not None else ".")
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=dest, prefix=f".{self.id}.") as scratch:
            archive_path = Path(scratch) / "outputs.tar.gz"
            kind = self.client.download_outputs(self.id, archive_path)
            target = dest / "partial" if kind == "partial" else dest
            _unpack(archive_path, Path(scratch) / "files", target, filenames)
        return target


def _seconds(start: datetime, end: datetime | None) -> float:
    """Seconds from ``start`` to ``end``, or to now when ``end`` is None."""
    return ((end or datetime.now(timezone.utc)) - start).total_seconds()


def _outputs_line(info: TaskInfo) -> str:
    """``"123 bytes"``, ``"123 bytes (partial)"`` or ``"none"``."""
    if info.outputs is None:
        return "none"
    return f"{info.outputs.size} bytes" + (" (partial)" if info.outputs.partial else "")


def _unpack(archive: Path, scratch: Path, target: Path, filenames: Sequence[str] | None) -> None:
    """Unpack ``archive`` into ``target``: all of it, or only ``filenames`` (via ``scratch``)."""
    from taskyard.agent.archive import safe_extract

    if filenames is None:
        safe_extract(archive, target)
        return
    names = set(safe_extract(archive, scratch))
    missing = sorted(set(filenames) - names)
    if missing:
        raise NotFound(f"the outputs hold no {', '.join(missing)}", field="filenames")
    for name in filenames:
        (target / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.move(scratch / name, target / name)


class Worker:
    """A worker: a fresh, isolated place where tasks run."""

    def __init__(self, name: str, *, client: Client | None = None, info: WorkerInfo | None = None) -> None:
        self.name = name
        self.client = client or default_client()
        self._info = info

    def __repr__(self) -> str:
        return f"Worker({self.name!r})"

    def refresh(self) -> WorkerInfo:
        self._info = self.client.worker(self.name)
        return self._info

    @property
    def status(self) -> WorkerStatus:
        return self.refresh().status

    @property
    def creation_time(self) -> datetime:
        return (self._info or self.refresh()).created_at

    @property
    def size(self) -> str:
        return (self._info or self.refresh()).size

    @property
    def image(self) -> str:
        return (self._info or self.refresh()).image

    @property
    def sandboxed(self) -> bool | None:
        """Whether its tasks run in a sandbox (None until the worker has started)."""
        info = self._info if self._info is not None and self._info.sandboxed is not None else self.refresh()
        return info.sandboxed

    def get_logs(self, log_size_mb: float = 1) -> str:
        """The last ``log_size_mb`` MB of what the tasks on this worker printed: their captured logs,
        then, while the worker lives, the worker's own log (output of tasks run with
        ``capture_task_output=False``), secrets masked in both."""
        return self.client.worker_logs(self.name, int(log_size_mb * 1024 * 1024))

    def terminate(self) -> None:
        self._info = self.client.terminate_worker(self.name)

    def wait_until_ready(self, timeout: float = 120, *, poll: float = 0.2) -> None:
        """Block until the worker is Running (its agent has called in): at once if it is. TimedOut after
        ``timeout`` seconds; Conflict, with the reason, if it ends instead."""
        deadline = time.monotonic() + timeout
        while (info := self.refresh()).status is not WorkerStatus.RUNNING:
            if info.status.is_finished() or info.status is WorkerStatus.TERMINATING:
                because = f": {info.reason}" if info.reason else ""
                raise Conflict(f"worker {self.name} is {info.status.value}{because}")
            if time.monotonic() >= deadline:
                raise TimedOut(f"worker {self.name} is still {info.status.value} after {timeout:g} s")
            time.sleep(poll)

    def upload_files(self, source: str | os.PathLike[str], destination: str | None = None) -> list[str]:
        """Copy a local file, or what a local folder holds, into this worker's task folder (or its
        ``destination`` folder, relative to it; Practicus's ``~/practicus/task/...`` is taken too), where
        its tasks and ``exec`` see them. Through the control plane, at most its upload limit, and only
        while no task runs there (Conflict otherwise). The names written."""
        from taskyard import worker_files

        with worker_files.packed(Path(source), self.client.upload_limit()) as archive:
            return self.client.upload_to_worker(self.name, archive, destination or ".")

    def download_files(self, source: str, destination: str | os.PathLike[str] = ".") -> list[str]:
        """Copy a file, or what a folder holds, of this worker's task folder (``source`` relative to it)
        into the local folder ``destination``; the names written. At most the server's upload limit."""
        from taskyard import worker_files

        with tempfile.TemporaryDirectory(prefix="taskyard-download-") as scratch:
            archive = Path(scratch) / "files.tar.gz"
            self.client.download_from_worker(self.name, source, archive)
            # as a worker bounds what it unpacks: by default 10 x the upload limit (TASKYARD_MAX_UNPACK_MB)
            return worker_files.unpack(archive, Path(destination), 10 * self.client.upload_limit())

    def view_logs(self, log_size_mb: float = 1) -> None:
        """Print :meth:`get_logs`."""
        print(self.get_logs(log_size_mb))

    def open_vscode(self) -> None:
        """Practicus opens VS Code on the worker; taskyard workers run none: raises Unsupported,
        saying how to look into the worker instead."""
        raise Unsupported(
            f"taskyard workers run no VS Code server to open. To look into worker {self.name}: "
            f"worker.open_notebook() (Jupyter), `taskyard workers shell {self.name}` or "
            f"`taskyard workers exec {self.name} -- CMD`, and worker.get_logs() for what its tasks printed"
        )

    def load(self, *args: object, **kwargs: object) -> None:
        """Practicus loads data into a process on the worker; taskyard workers hold none: raises Unsupported."""
        raise Unsupported(
            f"taskyard workers hold no data processes to load into. To work on data in worker {self.name}: "
            "worker.upload_files(...) then worker.run_task(...) with the code that reads it"
        )

    def open_notebook(self, *, open_browser: bool = True) -> str:
        """Start a Jupyter server inside this kept worker, where its task ran (its folder, environment and
        sandbox), and return its URL, which carries its token. It is printed, and opened in a browser
        where there is one; the server stops when the worker is terminated. The task's Python needs
        ``taskyard[notebooks]``."""
        url = self.client.open_notebook(self.name).url
        print(f"Jupyter server in worker {self.name}: {url}")
        if open_browser:
            _open_browser(url)
        return url

    def exec(self, *command: str, stdin: str | None = None, timeout: float = 60) -> ExecResult:
        """Run one command in this kept worker, where its task ran; its exit code and output."""
        return self.client.exec_in_worker(self.name, ExecRequest(argv=list(command), stdin=stdin, timeout=timeout))

    def run_task(self, file_name: str, files_path: str | Path | None = None, **kwargs) -> tuple[Worker, bool]:
        """Run another task on this kept worker; on one made by ``create_worker`` it gets the worker's config
        under its own, and finds in its folder what uploads and earlier tasks left there."""
        task = submit(file_name, files_path, worker=self, terminate_on_completion=False, client=self.client, **kwargs)
        status = task.wait(print_logs=kwargs.get("capture_task_output", True))
        return self, status is TaskStatus.SUCCESS


def _open_browser(url: str) -> None:
    """Open ``url`` in a graphical browser, if this machine has one to show; never fails for want of one.

    Without a display, nothing is opened: a text browser would take over the terminal."""
    import contextlib
    import webbrowser

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return
    with contextlib.suppress(Exception):
        webbrowser.open(url)


class Pool:
    """A named pool of workers: a backend, default worker config, a worker limit and an optional TTL."""

    def __init__(self, name: str, *, client: Client | None = None) -> None:
        self.name = name
        self.client = client or default_client()

    @classmethod
    def create(
        cls,
        name: str,
        *,
        max_workers: int = 1,
        worker_config: WorkerConfig | None = None,
        time_to_live: str | float | None = None,
        warm_workers: int = 0,
        backend: str = "local",
        shared_with: list[str] | None = None,
        client: Client | None = None,
    ) -> Pool:
        """Make a pool (admins only), usable by those in ``shared_with``: user names, ``"group:NAME"`` for the
        members of a group, ``"*"`` for every user."""
        pool = cls(name, client=client)
        spec = PoolSpec(
            name=name,
            shared_with=shared_with or [],
            backend=backend,
            worker_config=worker_config or WorkerConfig(),
            max_workers=max_workers,
            warm_workers=warm_workers,
            time_to_live=cast("float | None", time_to_live),  # a "1h30m" is made seconds by PoolSpec's validator
        )
        pool.client.create_pool(spec)
        return pool

    @property
    def info(self) -> PoolInfo:
        return self.client.pool(self.name)

    def delete(self) -> None:
        """Delete the pool: its queued tasks end Machine Terminated in Queue, its workers stop."""
        self.client.delete_pool(self.name)


__all__ = ["Pool", "Task", "Worker", "run_task", "submit", "worker_sizes"]
