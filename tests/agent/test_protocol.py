"""The agent's HTTP client against real servers on 127.0.0.1: one URL, or several servers of one database."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from taskyard.agent import protocol
from taskyard.agent.protocol import Client, Unreachable


class _Answer(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.server.open.append(self.connection)  # type: ignore[attr-defined]

    def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
        body = json.dumps({"server": self.server.label, "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args) -> None:
        pass


class Servers:
    """HTTP servers on 127.0.0.1, each answering every GET with its label."""

    def __init__(self) -> None:
        self.running: dict[str, ThreadingHTTPServer] = {}

    def start(self, label: str) -> str:
        """Start one; its URL."""
        server = ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
        server.label, server.open = label, []  # type: ignore[attr-defined]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}"
        self.running[url] = server
        return url

    def stop(self, url: str) -> None:
        """Stop it as a killed server stops: its kept-alive connections are cut too."""
        server = self.running.pop(url)
        server.shutdown()
        for connection in server.open:  # type: ignore[attr-defined]
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        server.server_close()


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    """Clients to close (their kept-alive connections) after the test."""
    made: list[Client] = []
    yield made
    for client in made:
        client.close()


@pytest.fixture
def servers() -> Iterator[Servers]:
    made = Servers()
    yield made
    for url in list(made.running):
        made.stop(url)


def _dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (its connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def test_one_url_works_as_before(servers, clients):
    client = Client(servers.start("a"), "token")
    clients.append(client)
    assert client.call("GET", "/next") == {"server": "a", "path": "/api/v1/agent/next"}
    assert client.urls == [client.urls[0]]


def test_a_dead_server_is_passed_over_at_once_and_the_answering_one_kept(servers, clients, monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(protocol.time, "sleep", waits.append)
    dead, alive = _dead_url(), servers.start("b")
    client = Client(f"{dead},{alive}", "token")
    clients.append(client)
    assert client.call("GET", "/next")["server"] == "b"
    assert waits == []  # no backoff before the second server was tried
    assert client.urls == [alive, dead]  # it keeps to the one that answered
    assert client.call("GET", "/heartbeat")["server"] == "b"


def test_a_server_that_dies_between_calls_is_left_for_the_next(servers, clients):
    first, second = servers.start("a"), servers.start("b")
    client = Client(f"{first},{second}", "token")
    clients.append(client)
    assert client.call("GET", "/next")["server"] == "a"  # a kept-alive connection to a now
    servers.stop(first)
    assert client.call("GET", "/next")["server"] == "b"


def test_learned_servers_join_and_the_one_in_use_stays_first(servers, clients):
    dead, first, second = _dead_url(), servers.start("a"), servers.start("b")
    client = Client(first, "token")
    clients.append(client)
    client.learn([second, first, dead])
    assert client.urls == [first, second, dead]
    client.learn([])  # a server with no roster (SQLite) says nothing: kept as it was
    assert client.urls == [first, second, dead]
    client.learn([second])  # the others are gone: only the one in use is kept besides
    assert client.urls == [first, second]


def test_it_backs_off_only_after_a_whole_round(monkeypatch, clients):
    tried: list[tuple] = []
    waited_after: list[int] = []  # how many servers had been tried at each wait
    connect = socket.create_connection
    monkeypatch.setattr(protocol, "RETRY_FOR", 0.3)
    monkeypatch.setattr(protocol.socket, "create_connection", lambda *a, **k: tried.append(a[0]) or connect(*a, **k))
    monkeypatch.setattr(protocol.time, "sleep", lambda seconds: waited_after.append(len(tried)))
    dead = [_dead_url() for _ in range(3)]
    client = Client(",".join(dead), "token")
    clients.append(client)
    with pytest.raises(Unreachable):
        client.call("GET", "/next")
    assert waited_after and all(count % 3 == 0 for count in waited_after)
    assert [f"http://127.0.0.1:{port}" for _, port in tried[:6]] == dead + dead  # round after round, in order
