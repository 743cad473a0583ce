"""Runs one task: fetch its files, start it (sandboxed, where the worker is), ship its output, report."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from . import envs, git, kinds, tree
from .isolation import Isolation
from .logpump import LogPump
from .masking import Masker
from .standby import Standby

PGID_FILE = "task.pgid"  # read by the local backend to stop a task whose agent died
WORKER_LOG_FILE = "task_output.log"  # in the worker's folder: the output of tasks that are not captured
QUICK = 0.05  # seconds: a task that ends within this long tells its start and its output with its finish


def folders(worker_dir: Path) -> list[Path]:
    """The folders a task may write in: its own (its working directory), its outputs, its home."""
    return [worker_dir / "task", worker_dir / "outputs", worker_dir / "home"]


class TaskRun:
    def __init__(
        self,
        client,
        worker_dir: Path,
        assignment: dict,
        isolation: Isolation | None = None,
        standby: Standby | None = None,
        python: envs.Settings | None = None,
    ) -> None:
        self.client = client
        self.worker_dir = worker_dir
        self.a = assignment
        self.isolation = isolation or Isolation({})
        self.standby = standby  # the sandbox started ahead for the task, if any
        self.python_settings = python or envs.Settings()
        self.python: envs.Environment | None = None  # the Python environment the task asked for
        self.task_id = assignment["task_id"]
        self.repos = git.repositories(assignment.get("git_configs") or ())
        self.task_dir, self.output_dir, self.home_dir = folders(worker_dir)
        self.killed = False
        self.exited_at: float | None = None  # when the task's process ended, by this host's clock
        self._oom_kills_before = 0
        self.worker_done = False  # the control plane's answer to the finish: this worker takes no more tasks
        self.process: subprocess.Popen | None = None
        self._lock = threading.Lock()
        self._started_at: float | None = None  # the task's start, until the control plane has been told it
        self._start_lock = threading.Lock()  # held while the start may be on its way: nothing overtakes it
        self.masker = Masker.of(_secret_values(assignment))  # None: the task was given no secret
        self.pump = LogPump(self._send_logs, assignment["log_seq"], self.masker, linger=QUICK)
        self.pump.on_kill = self.kill
        # Output of a task that is not captured goes to the worker's own log instead (see _send_worker_log).
        self.worker_log = LogPump(self._send_worker_log, 0, self.masker, linger=QUICK)
        self.log_tail: list[dict] = []  # the log's last chunks, not sent yet: they go with the finish report
        self.worker_log.on_kill = self.kill
        self._worker_log_written = 0

    # -- the run ---------------------------------------------------------------------------------

    def run(self) -> None:
        try:
            self._prepare()
        except Exception as exc:  # anything that stops the task from starting is a runtime error
            self.pump.close()
            self._finish(error=f"could not prepare the task: {exc}")
            return
        if self.killed:
            self._finish(killed=True)
            return
        try:
            code = self._execute()
        except Exception as exc:
            self.kill()
            self._finish(error=f"the agent failed while running the task: {exc!r}")
            return
        reason = self.isolation.oom_message() if self._out_of_memory(code) else None
        self._finish(exit_code=code, killed=self.killed, outputs=True, reason=reason)

    def _out_of_memory(self, code: int) -> bool:
        return code != 0 and not self.killed and self.isolation.oom_kills() > self._oom_kills_before

    def _prepare(self) -> None:
        kept = [self.task_dir, self.home_dir] if self.a.get("keep_files") else []  # a requested worker's
        for folder in self._writable():
            if folder in kept:
                folder.mkdir(parents=True, exist_ok=True)
            else:
                _empty(folder)  # the same folder, not a new one: a sandbox started ahead has it mounted
        from . import archive

        inline = self.a.get("bundle")
        if inline is not None:
            import base64

            bundle = base64.b64decode(inline)
        else:
            bundle = self.client.call("GET", f"/tasks/{self.task_id}/bundle", timeout=300)
        archive.safe_extract(io.BytesIO(bundle), self.task_dir, max_bytes=self.a.get("max_unpack_bytes"))
        if not self.repos:
            self._check_task_file()  # at once: no clone can bring it later
        else:
            (self.home_dir / ".gitconfig").write_text(git.home_config(self.repos))
        self.isolation.own(*self._writable())
        for repo in self.repos:
            git.clone(repo, self._run_captured, lambda text: self.pump.write("stderr", text))
        self._check_task_file()  # it may come from a clone (a Task Runner request's file)
        self._prepare_python()
        if self.a.get("startup_script"):
            self._step(["bash", "-c", self.a["startup_script"]], "the startup script")

    def _check_task_file(self) -> None:
        if not (self.task_dir / self.a["file_name"]).is_file():
            raise FileNotFoundError(git.missing_task_file(self.a["file_name"], self.repos))

    def _step(self, command: list[str], what: str) -> None:
        """Run a preparation step with its output in the task's log; raise if it fails."""
        with self._lock:
            if self.killed:
                raise RuntimeError(f"killed before {what}")
            self.process = self._popen(command, subprocess.PIPE, subprocess.PIPE)
        self._capture(self.process)
        code = self._reap(self.process)
        self.pump.drain()
        if code != 0:
            raise RuntimeError(f"{what} failed with exit code {code}")

    def _prepare_python(self) -> None:
        hooks = envs.Hooks(self._setup, self._note, self.isolation.own, self.isolation.task_uid, lambda: self.killed)
        self.python = envs.prepare(self.a, self.python_settings, self.task_dir, hooks)

    def _setup(self, command: list[str], **place) -> tuple[int, str]:
        """Run a setup command where ``place`` says (see :meth:`_popen`), each line of its output in the
        task's log marked as setup; return its exit code and its last lines."""
        with self._lock:
            if self.killed:
                raise RuntimeError("killed while setting up")
            process = self.process = self._popen(command, subprocess.PIPE, subprocess.STDOUT, **place)
        assert process.stdout is not None  # a pipe, as started
        tail = envs.relay(process.stdout, self._note)
        return self._reap(process), tail

    def _note(self, text: str) -> None:
        self.pump.write("system", f"[setup] {text}\n")

    def _run_captured(self, command: list[str], env: dict[str, str]) -> tuple[int, str]:
        """Run a preparation step with ``env`` added to the task's; its exit code and all it printed."""
        with tempfile.TemporaryFile() as out:
            with self._lock:
                if self.killed:
                    raise RuntimeError("killed while preparing the task")
                self.process = self._popen(command, out, subprocess.STDOUT, extra_env=env)
            code = self._reap(self.process)
            out.seek(0)
            return code, out.read().decode(errors="replace")

    def _execute(self) -> int:
        with self._lock:
            if self.killed:
                self.pump.close()
                return -signal.SIGTERM
            self._oom_kills_before = self.isolation.oom_kills()
            self._started_at = time.time()  # the time seen here, whenever the report lands
            self.process = self._start()
        if not tree.ends_within(self.process, QUICK) and self._tell_start().get("kill"):
            self.kill()
        code = self._reap(self.process)
        self.exited_at = time.time()
        self.log_tail = self.pump.close_rest()  # goes with the finish report
        self.worker_log.close()
        return code

    def _tell_start(self) -> dict:
        """Report the task In Progress, unless its first output has told it already or is about to."""
        if self.pump.holds_output():  # its send, at the end of the pump's linger, tells the start
            return {}
        with self._start_lock:
            start = self._untold_start()
            if not start:
                return {}
            return self.client.call("POST", f"/tasks/{self.task_id}/events", {"status": "in_progress",
                                                                              "at": start["started_at"]})

    def _untold_start(self) -> dict:
        """``{"started_at": ...}`` for the report that tells the start (then told), or {} once told; the
        caller holds ``_start_lock``."""
        at, self._started_at = self._started_at, None
        return {} if at is None else {"started_at": at}

    def _reap(self, process: subprocess.Popen) -> int:
        """Wait for a process, then stop whatever it left behind, in its group or not: nothing outlives it."""
        code = process.wait()
        if not self.isolation.sandboxed:  # a sandbox's PID namespace ends with it, and all inside
            tree.kill_all_and_reap(self.isolation.memory_cgroup)
        (self.worker_dir / PGID_FILE).unlink(missing_ok=True)
        return code

    def _start(self) -> subprocess.Popen:
        command = kinds.command(self.a["kind"], self.a["file_name"])
        if self.python is not None:
            command = self.python.command(command)
        network = self.a.get("network", True)
        standby, self.standby = self.standby, None
        mounted = not self.isolation.shadowed(self._shown())  # the sandbox started ahead shows all the task needs
        pump = self.pump if self.a["capture_output"] else self.worker_log
        if standby is not None and network and mounted:
            with contextlib.suppress(OSError):  # it died waiting: start the task the slow way
                process = standby.become(command, self._env())
                (self.worker_dir / PGID_FILE).write_text(str(process.pid))
                self._capture(process, pump)
                return process
        if standby is not None:
            standby.discard()
        process = self._popen(command, subprocess.PIPE, subprocess.PIPE, network=network)
        self._capture(process, pump)
        return process

    def _capture(self, process: subprocess.Popen, pump: LogPump | None = None) -> None:
        assert process.stdout is not None and process.stderr is not None  # started with both as pipes
        pipes = {"stdout": process.stdout, "stderr": process.stderr}
        (pump or self.pump).attach({name: os.dup(pipe.fileno()) for name, pipe in pipes.items()})
        for pipe in pipes.values():
            pipe.close()

    def _popen(self, command: list[str], stdout, stderr, *, network: bool = True, cwd: Path | None = None,
               writable: list[Path] | None = None, read_only: list[str] | None = None,
               env: dict[str, str] | None = None, extra_env: dict[str, str] | None = None,
               stdin=subprocess.DEVNULL, note: bool = True) -> subprocess.Popen:
        """Start a process group of its own (in the sandbox), and note it where the backend finds it if we die.

        By default it runs in the task's folder, may write the task's folders and has the task's environment
        (or ``env``), with ``extra_env`` on top."""
        cwd = cwd or self.task_dir
        writable = self._writable() if writable is None else writable
        shown = self._shown() + (read_only or [])
        argv, extra = self.isolation.command(command, cwd=cwd, writable=writable, network=network, read_only=shown)
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={**(self._env() if env is None else env), **(extra_env or {})},
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            **extra,
        )
        if note:
            (self.worker_dir / PGID_FILE).write_text(str(process.pid))
        return process

    def start_inside(self, command: list[str], *, stdin, stdout, stderr,
                     extra_env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``command`` as the task ran: in its sandbox and folder, with its environment and Python
        (a command sent to the kept worker after the task). It is a process group of its own."""
        if self.python is not None:
            command = self.python.command(command)
        network = self.a.get("network", True)
        return self._popen(command, stdout, stderr, stdin=stdin, network=network, extra_env=extra_env, note=False)

    def masked_text(self, data: bytes) -> str:
        """``data`` as text, with the task's secret values masked."""
        return self._masked(data.decode("utf-8", "replace")) or ""

    def _writable(self) -> list[Path]:
        return [self.task_dir, self.output_dir, self.home_dir]

    def _shown(self) -> list[str]:
        """Folders the task's commands see read-only beyond the sandbox's own: its Python environment's."""
        return self.python.folders() if self.python is not None else []

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_AGENT_")}
        env.update(self.a["env"])
        env.update(self.a.get("secret_env") or {})  # in the task's environment only, never the agent's
        if self.python is not None:
            env.update(self.python.variables(env.get("PATH", os.defpath)))
        env.update(
            TASKYARD_TASK_ID=self.task_id,
            TASKYARD_OUTPUT_DIR=str(self.output_dir),
            HOME=str(self.home_dir),
            PYTHONUNBUFFERED="1",
        )
        env.update(git.task_env(self.repos))  # the tokens of the repositories with save_secret
        return env

    # -- stopping ----------------------------------------------------------------------------------

    def kill(self) -> None:
        """SIGTERM to every process of the task now, SIGKILL after the grace period."""
        with self._lock:
            first = not self.killed
            self.killed = True
            process = self.process
        if process is None or not first:
            return
        cgroup = self.isolation.memory_cgroup
        tree.signal_all(signal.SIGTERM, spare_bwrap=True, cgroup=cgroup)
        timer = threading.Timer(self.a["kill_grace"], tree.signal_all, (signal.SIGKILL,), {"cgroup": cgroup})
        timer.daemon = True
        timer.start()

    # -- reporting ---------------------------------------------------------------------------------

    def _send_logs(self, chunks: list[dict]) -> tuple[int, bool]:
        with self._start_lock:
            body = {"chunks": chunks, **self._untold_start()}
            answer = self.client.call("POST", f"/tasks/{self.task_id}/logs", body)
        return answer["acked"], answer.get("kill", False)

    def _send_worker_log(self, chunks: list[dict]) -> tuple[int, bool]:
        """Ship uncaptured output, masked, to the worker's own log on the control plane, and keep a copy
        in ``task_output.log`` in the worker's folder (for whoever inspects a kept worker)."""
        fresh = [chunk for chunk in chunks if chunk["seq"] > self._worker_log_written]
        if fresh:
            with open(self.worker_dir / WORKER_LOG_FILE, "a", encoding="utf-8", errors="replace") as out:
                out.write("".join(chunk["text"] for chunk in fresh))
            self._worker_log_written = fresh[-1]["seq"]
        answer = self.client.call("POST", f"/tasks/{self.task_id}/worker-log", {"chunks": chunks})
        return answer["acked"], answer.get("kill", False)

    def _finish(self, *, exit_code=None, killed=False, error=None, outputs=False, reason=None) -> None:
        if self.standby is not None:  # the task never started
            self.standby.discard()
            self.standby = None
        if self.python is not None:
            self.python.release()
        ended_at = self.exited_at or time.time()  # waiting on the control plane for the logs is not the task's time
        if outputs and any(self.output_dir.iterdir()):
            reason = _joined(reason, self._upload_outputs(partial=killed or exit_code != 0), exit_code)
            ended_at = time.time()
        error, reason = self._masked(error), self._masked(reason)
        chunks, self.log_tail = self.log_tail, []
        note = error or reason
        if note is not None:
            seq = self.pump.last_seq + 1
            chunks.append({"seq": seq, "stream": "system", "ts": time.time(), "text": f"[taskyard] {note}\n"})
        body = {"exit_code": exit_code, "killed": killed, "error": error, "reason": reason, "chunks": chunks,
                "exited_at": self.exited_at, "ended_at": ended_at}
        with self._start_lock:
            body |= self._untold_start()  # a task that ended at once tells its start with its finish
        answer = self.client.call("POST", f"/tasks/{self.task_id}/finish", body)
        self.worker_done = answer.get("terminate", False)

    def _masked(self, text: str | None) -> str | None:
        """``text`` with the task's secret values masked: a message about the task leaves the worker so."""
        if text is None or self.masker is None:
            return text
        return self.masker.mask(text)

    def _upload_outputs(self, partial: bool) -> str | None:
        """Upload the outputs, within their limit; return a note on what was left out (or could not go)."""
        if not partial:
            with self._start_lock:  # a task that ended at once tells its start with its Finalizing
                finalizing = {"status": "finalizing", "at": self.exited_at, **self._untold_start()}
                self.client.call("POST", f"/tasks/{self.task_id}/events", finalizing)
        from . import archive

        kept, left = _within_limit(
            self.output_dir, archive.iter_files(self.output_dir), self.a.get("max_outputs_bytes")
        )
        note = _outputs_note(kept, left, self.a.get("max_outputs_bytes")) if left else None
        if not kept:
            return note
        buffer = io.BytesIO()
        archive.write_tar(self.output_dir, buffer, kept)
        flag = "true" if partial else "false"
        try:
            self.client.call("PUT", f"/tasks/{self.task_id}/outputs?partial={flag}", raw=buffer.getvalue(), timeout=300)
        except Exception as exc:  # the task has ended all the same: say so in its status message
            return f"its outputs could not be uploaded ({exc})"
        return note


TAR_OVERHEAD = 1536  # a tar header and its padding, at most, for each file


def _within_limit(root: Path, files: list[Path], limit: int | None) -> tuple[list[Path], list[Path]]:
    """The files that fit ``limit`` bytes when packed, in order, and those left out."""
    if limit is None:
        return files, []
    kept, left, total = [], [], 4096
    for rel in files:
        size = (root / rel).lstat().st_size + TAR_OVERHEAD
        if total + size <= limit * 0.99:
            kept.append(rel)
            total += size
        else:
            left.append(rel)
    return kept, left


def _outputs_note(kept: list[Path], left: list[Path], limit: int | None) -> str:
    def names(paths: list[Path]) -> str:
        shown = ", ".join(p.as_posix() for p in paths[:10])
        return (shown + f" and {len(paths) - 10} more" if len(paths) > 10 else shown) or "none"

    mb = f"{(limit or 0) / (1024 * 1024):g} MB"
    over = f"the outputs were over the limit of {mb} (TASKYARD_MAX_OUTPUTS_MB)"
    return f"{over}; kept: {names(kept)}; left out: {names(left)}"


def _joined(reason: str | None, note: str | None, exit_code: int | None) -> str | None:
    """The ending's reason with the outputs' note after it; a failed exit is named when there is no other reason."""
    if note is None:
        return reason
    if reason is None and exit_code not in (0, None):
        reason = f"the task exited with code {exit_code}"
    return f"{reason}; {note}" if reason else note


def _secret_values(assignment: dict) -> list[str]:
    """Every secret value the task is given: its secret variables and its git configs' tokens."""
    values = list((assignment.get("secret_env") or {}).values())
    return values + [repo["token"] for repo in assignment.get("git_configs") or () if repo.get("token")]


def _empty(folder: Path) -> None:
    """Make ``folder`` exist and hold nothing."""
    folder.mkdir(parents=True, exist_ok=True)
    for entry in folder.iterdir():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
