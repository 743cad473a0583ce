"""Ways into a kept worker that stay open: a Jupyter server, and a shell, each behind a loopback port.

Both run in the task's sandbox, which may have no network of its own (``network=False``), so
neither listens there on TCP. The Jupyter server listens on a unix socket in the task's home
folder (a folder the sandbox shares with the agent, at the same path); the agent forwards a
port of ``127.0.0.1`` to it. Jupyter asks for its token (given in ``JUPYTER_TOKEN``, never on a
command line) on every request. A shell's door is a port of ``127.0.0.1`` that lets in one
connection, that opens with the door's one-time key; the agent starts the shell then, in the
sandbox, under a pseudo-terminal or on pipes, and relays its bytes in frames (see :func:`send`).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

READY_WITHIN = 120.0  # seconds a Jupyter server may take to answer for the first time
SOCKET_NAME = ".jupyter.sock"
SOCKET_PATH_MAX = 107  # bytes of a unix socket's path, on Linux
DOOR_OPEN_FOR = 60.0  # seconds a shell's door waits for its one connection
SHELL = "/bin/bash"


class NotebookServer:
    """A Jupyter server started in the task's sandbox, forwarded to a loopback port."""

    def __init__(self, process: subprocess.Popen, forward: Forward, token: str) -> None:
        self.process = process
        self.forward = forward
        self.url = f"http://127.0.0.1:{forward.port}/?token={token}"

    @classmethod
    def start(cls, run, log_path: Path) -> NotebookServer:
        token = secrets.token_urlsafe(32)
        path = run.home_dir / SOCKET_NAME
        if len(os.fsencode(path)) > SOCKET_PATH_MAX:
            raise OSError(f"the worker's folder {run.home_dir} is too deep for a unix socket")
        path.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "jupyter_server", f"--ServerApp.sock={path}", "--ServerApp.open_browser=False",
                f"--ServerApp.root_dir={run.task_dir}"]
        if run.isolation.task_uid == 0:
            argv.append("--allow-root")
        with open(log_path, "ab") as log:
            process = run.start_inside(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       extra_env={"JUPYTER_TOKEN": token})
        try:
            _wait_ready(str(path), token, process, log_path)
        except BaseException:
            _end(process)
            raise
        return cls(process, Forward(str(path)), token)

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self.forward.close()
        _end(self.process)


def _wait_ready(path: str, token: str, process: subprocess.Popen, log_path: Path) -> None:
    """Until the server answers ``/api/status`` with its token; OSError if it ends or takes too long."""
    deadline = time.monotonic() + READY_WITHIN
    request = f"GET /api/status HTTP/1.0\r\nHost: 127.0.0.1\r\nAuthorization: token {token}\r\n\r\n".encode()
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise OSError(f"the Jupyter server stopped (exit code {process.returncode}): {_tail(log_path)}")
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as probe:
            probe.settimeout(5)
            probe.connect(path)
            probe.sendall(request)
            if probe.recv(64).startswith(b"HTTP/1.1 200"):
                return
        time.sleep(0.1)
    raise OSError(f"the Jupyter server did not answer within {READY_WITHIN:.0f} s")


def _tail(log_path: Path) -> str:
    with contextlib.suppress(OSError):
        return log_path.read_text(errors="replace")[-600:].strip()
    return ""


def _end(process: subprocess.Popen, grace: float = 3.0) -> None:
    """Stop a process group started in a session of its own (a sandbox dies with its bwrap), and reap it."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, sig)
        try:
            process.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


class Forward:
    """Connections to a loopback port, each relayed both ways to the unix socket at ``target``."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, name="notebook-forward", daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(conn,), daemon=True).start()

    def _relay(self, conn: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX)
        try:
            upstream.connect(self.target)
        except OSError as exc:
            print(f"taskyard agent: cannot reach the Jupyter server: {exc}", file=sys.stderr)
            conn.close()
            upstream.close()
            return
        with self._lock:
            self._open.update((conn, upstream))
        threading.Thread(target=_pump, args=(upstream, conn), daemon=True).start()
        _pump(conn, upstream)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        with self._lock:
            for conn in self._open:
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy ``source`` to ``sink`` until it ends, then end ``sink``'s writing side."""
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


# -- a shell -------------------------------------------------------------------------------------

# Frames, both ways: one byte of kind, four of length (big-endian), then the payload.
# To the shell: b"i" input, b"e" end of input, b"w" window size ({"rows": r, "cols": c}).
# From it: b"o" output, b"x" its exit code (decimal text), the last frame.
HEADER = struct.Struct(">cI")


def send(conn: socket.socket, kind: bytes, payload: bytes = b"") -> None:
    conn.sendall(HEADER.pack(kind, len(payload)) + payload)


def receive(reader) -> tuple[bytes, bytes]:
    """The next frame from a file-like ``reader``; ``(b"", b"")`` at its end."""
    head = reader.read(HEADER.size)
    if len(head) < HEADER.size:
        return b"", b""
    kind, size = HEADER.unpack(head)
    return kind, reader.read(size)


class ShellDoor:
    """A loopback port that lets in one connection bearing its key, and gives it a shell in the sandbox."""

    def __init__(self, run, tty: bool) -> None:
        self.run = run
        self.tty = tty
        self.key = secrets.token_urlsafe(32)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(DOOR_OPEN_FOR)
        self.address = f"127.0.0.1:{self.listener.getsockname()[1]}"
        self.process: subprocess.Popen | None = None
        self.done = False

    @classmethod
    def open(cls, run, tty: bool) -> ShellDoor:
        door = cls(run, tty)
        threading.Thread(target=door._serve, name="shell-door", daemon=True).start()
        return door

    def _serve(self) -> None:
        try:
            let_in = self._let_in()
            if let_in is not None:
                with let_in[0]:
                    self._shell(*let_in)
        finally:
            self.close()

    def _let_in(self) -> tuple[socket.socket, Any] | None:
        """The first connection (and its reader), if it brings the key within ``DOOR_OPEN_FOR``; the door
        then shuts."""
        try:
            conn, _ = self.listener.accept()
        except OSError:
            return None
        finally:
            self.listener.close()
        conn.settimeout(10)
        reader = conn.makefile("rb")
        hello = reader.readline(4096)
        if not hmac.compare_digest(hello.strip(), self.key.encode()):
            conn.close()
            return None
        conn.settimeout(None)
        return conn, reader

    def _shell(self, conn: socket.socket, reader) -> None:
        if self.tty:
            import pty

            parent, child = pty.openpty()
            argv = ["setsid", "--wait", "--ctty", SHELL, "-i"]  # the terminal as its own: Ctrl-C, job control
            self.process = self.run.start_inside(argv, stdin=child, stdout=child, stderr=child,
                                                 extra_env={"TERM": os.environ.get("TERM", "xterm")})
            os.close(child)
            output = os.fdopen(parent, "r+b", buffering=0)
        else:
            self.process = self.run.start_inside([SHELL], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                                 stderr=subprocess.STDOUT)
            output = self.process.stdout  # type: ignore[assignment]
        threading.Thread(target=self._take_input, args=(reader, output), daemon=True).start()
        _relay_output(output, conn)
        code = self.process.wait()
        with contextlib.suppress(OSError):
            send(conn, b"x", str(code).encode())

    def _take_input(self, reader, terminal) -> None:
        assert self.process is not None
        sink = terminal if self.tty else self.process.stdin
        assert sink is not None  # the terminal, or the shell's stdin pipe
        with contextlib.suppress(OSError, ValueError):
            while True:
                kind, payload = receive(reader)
                if kind == b"i":
                    sink.write(payload)
                    sink.flush()
                elif kind == b"w" and self.tty:
                    _resize(terminal.fileno(), json.loads(payload))
                elif kind in (b"e", b""):
                    break
            if self.tty:
                sink.write(b"\x04")  # end of input, as a terminal says it
            else:
                sink.close()

    def close(self) -> None:
        self.done = True
        with contextlib.suppress(OSError):
            self.listener.close()
        if self.process is not None and self.process.poll() is None:
            _end(self.process)


def _relay_output(output, conn: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := output.read1(65536) if hasattr(output, "read1") else output.read(65536):
            send(conn, b"o", data)


def _resize(fd: int, size: dict) -> None:
    import fcntl
    import termios

    packed = struct.pack("HHHH", int(size.get("rows", 24)), int(size.get("cols", 80)), 0, 0)
    with contextlib.suppress(OSError):
        fcntl.ioctl(fd, termios.TIOCSWINSZ, packed)
