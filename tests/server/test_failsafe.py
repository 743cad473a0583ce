"""A request that makes a 500 leaves its keep-alive connection serving the next request."""

from __future__ import annotations

import http.client
import json
import socket
import threading

import pytest
import uvicorn

from taskyard.server.app import create_app
from taskyard.server.config import ServerConfig


@pytest.fixture
def failing_server(tmp_path):
    """A real server (uvicorn on 127.0.0.1) whose app has one route more, that always fails."""
    app = create_app(ServerConfig(data_dir=tmp_path / "home", warm_workers=0, sandbox="off"))

    def boom() -> dict:
        raise RuntimeError("a bug")

    app.add_api_route("/api/v1/boom", boom)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", timeout_keep_alive=30))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.02)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(10)
    sock.close()


def test_a_500_does_not_break_the_next_request_on_its_connection(failing_server):
    conn = http.client.HTTPConnection("127.0.0.1", failing_server, timeout=10)
    try:
        conn.request("GET", "/api/v1/boom")
        failed = conn.getresponse()
        body = json.loads(failed.read())
        assert failed.status == 500 and body["error"]["code"] == "internal"
        assert "a bug" not in body["error"]["message"]  # the server log has it; the caller does not
        first_socket = conn.sock
        conn.request("GET", "/api/v1/health")  # raises RemoteDisconnected if the server closed it
        answer = conn.getresponse()
        assert answer.status == 200 and json.loads(answer.read())["status"] == "ok"
        assert conn.sock is first_socket
    finally:
        conn.close()
