"""A small callback receiver on 127.0.0.1: records each request, answers as it is told."""

from __future__ import annotations

import json
import random
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from support import Server, write

FAST = """
[callbacks]
first_delay = 0.2
max_delay = 0.5
timeout = 1
attempts = 4
allowed_hosts = ["127.0.0.1"]
"""


def fast_server(home: Path, db_url: str | None = None, **env: str) -> Server:
    """A control plane whose callbacks are retried within a second, and go to 127.0.0.1 only."""
    home.mkdir(parents=True, exist_ok=True)
    config = write(home.parent, f"{home.name}.toml", FAST)
    return Server(home, db_url, TASKYARD_CONFIG=str(config), TASKYARD_KILL_GRACE="1", **env)


@dataclass
class Received:
    headers: dict[str, str]  # names in lower case
    body: bytes

    @property
    def json(self) -> dict:
        return json.loads(self.body)


def free_port() -> int:
    """A port nobody listens on, below the ephemeral range: no outgoing connection takes it meanwhile."""
    for _ in range(100):
        port = random.randint(20000, 30000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class Receiver:
    """Answers the first requests with ``answers`` (status codes), then 200. ``hold`` cleared: requests wait."""

    def __init__(self, port: int = 0, answers: tuple[int, ...] = ()) -> None:
        self.port = port or free_port()
        self.answers = list(answers)
        self.requests: list[Received] = []
        self.hold = threading.Event()
        self.hold.set()
        self._httpd: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> Receiver:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, name="callback-receiver", daemon=True).start()
        return self

    def stop(self) -> None:
        self.hold.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _answer(self) -> int:
        return self.answers.pop(0) if self.answers else 200


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            receiver.requests.append(Received({k.lower(): v for k, v in self.headers.items()}, body))
            receiver.hold.wait(30)
            code = receiver._answer()
            reply = json.dumps({"success": code < 300, "message": "ok"}).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, *args: object) -> None:
            pass

    return Handler
