"""The client side of a shell in a kept worker: this terminal (or these pipes) joined to the worker's door.

The control plane has the worker's agent open a door (an address that lets in one connection
bearing a one-time key, see :mod:`taskyard.agent.doors`); this module connects to it and relays
the terminal both ways. The door is on the worker's loopback, so the shell is reached from the
host the worker runs on (the local backend's).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sys
import threading

from taskyard.agent.doors import receive, send


def connect(address: str, key: str) -> socket.socket:
    host, _, port = address.rpartition(":")
    conn = socket.create_connection((host, int(port)), timeout=10)
    conn.settimeout(None)
    conn.sendall(key.encode() + b"\n")
    return conn


def relay(conn: socket.socket, tty: bool) -> int:
    """Join stdin and stdout to the shell behind ``conn`` until it ends; its exit code."""
    if tty:
        size = shutil.get_terminal_size()
        send(conn, b"w", json.dumps({"rows": size.lines, "cols": size.columns}).encode())
    threading.Thread(target=_send_input, args=(conn, tty), daemon=True).start()
    with _raw(sys.stdin.fileno()) if tty else contextlib.nullcontext():
        return _print_output(conn)


def _send_input(conn: socket.socket, tty: bool) -> None:
    fd = sys.stdin.fileno()
    with contextlib.suppress(OSError):
        while data := os.read(fd, 65536):
            send(conn, b"i", data)
        send(conn, b"e")


def _print_output(conn: socket.socket) -> int:
    reader = conn.makefile("rb")
    out = sys.stdout.buffer
    while True:
        kind, payload = receive(reader)
        if kind == b"o":
            out.write(payload)
            out.flush()
        elif kind == b"x":
            return int(payload)
        elif kind == b"":
            return 1  # the door closed without an exit code: the worker stopped


@contextlib.contextmanager
def _raw(fd: int):
    """The terminal in raw mode (each key goes to the remote shell as typed), restored at the end."""
    import termios
    import tty as tty_module

    saved = termios.tcgetattr(fd)
    try:
        tty_module.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
