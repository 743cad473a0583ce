"""The agent calls of every task go through the gate (taskyard.server.agent_gate), not FastAPI's routing:
its answers, errors included, are those of the routes the OpenAPI document describes.

One real app is served twice on 127.0.0.1: as it runs (the gate first) and as plain FastAPI (its
routes only). Each request gets the same status and body from both.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi import FastAPI

from taskyard.models import TaskSpec
from taskyard.server import agent_gate
from taskyard.server.app import create_app
from taskyard.server.config import ServerConfig, builtin_sizes
from taskyard.server.db.models import TaskRow, WorkerRow
from taskyard.server.notifier import assignment_key
from taskyard.server.services import tasks as task_service
from taskyard.server.services import users
from taskyard.server.services import workers as worker_service
from taskyard.status import TaskStatus

from support import wait_for

AGENT = "/api/v1/agent"


def _serve(app) -> tuple[int, uvicorn.Server, threading.Thread]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        thread.join(0.02)
    return sock.getsockname()[1], server, thread


@pytest.fixture
def both(tmp_path) -> Iterator[tuple[int, int, str]]:
    """The ports of the app with its gate and of the same app through FastAPI alone, and a live worker's token."""
    app = create_app(ServerConfig(data_dir=tmp_path / "home", warm_workers=0, sandbox="off"))
    with app.state.plane.transaction() as session:
        _, token = worker_service.create_worker(
            session, user_id=None, pool="default", backend="local", size="X-Small", image="python", keep=False
        )

    async def fastapi_only(scope, receive, send) -> None:
        await FastAPI.__call__(app, scope, receive, send)

    served = [_serve(app), _serve(fastapi_only)]
    yield served[0][0], served[1][0], token
    for _, server, thread in served:
        server.should_exit = True
        thread.join(10)
    app.state.plane.database_threads.shutdown(wait=False)


def _answer(port: int, method: str, path: str, token: str | None, body: bytes | None, kind: str | None):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    headers = ({"Content-Type": kind} if kind else {}) | ({"Authorization": f"Bearer {token}"} if token else {})
    try:
        conn.request(method, path, body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, json.loads(answer.read())
    finally:
        conn.close()


def _without_servers(answer: object) -> object:
    """A heartbeat's answer names the servers to call; the two ports differ."""
    return {k: v for k, v in answer.items() if k != "servers"} if isinstance(answer, dict) else answer


FINISH = json.dumps({"exit_code": 0, "killed": False, "chunks": []}).encode()
CASES = [
    ("GET", "/next", "good", None),
    ("GET", "/next?wait=0", "good", None),
    ("POST", "/heartbeat?wait=0", "good", b""),
    ("GET", "/next", None, None),
    ("GET", "/next", "ty_not-a-token", None),
    ("POST", "/heartbeat", None, b""),
    ("GET", "/next?wait=-1", "good", None),
    ("GET", "/next?wait=nan", "good", None),
    ("GET", "/next?wait=inf", "good", None),
    ("GET", "/next?wait=soon", "good", None),
    ("POST", "/heartbeat?wait=3601", "good", b""),
    ("GET", "/next?wait=9&wait=-2", "good", None),
    ("POST", "/tasks/t-none/finish", "good", FINISH),
    ("POST", "/tasks/t-none/finish", None, FINISH),
    ("POST", "/tasks/t-none/finish", "good", b"{not json"),
    ("POST", "/tasks/t-none/finish", "good", b'{"exit_code": "zero", "killed": false, "chunks": []}'),
    ("POST", "/tasks/t-none/finish", "good", b"{}"),
    ("POST", "/tasks/t-none/events", "good", b'{"status": "in_progress"}'),
    ("POST", "/tasks/t-none/events", "good", b'{"status": "no such status"}'),
    ("POST", "/tasks/t-none/logs", "good", b'{"chunks": [{"seq": 1, "stream": "stdout", "text": "hi"}]}'),
    ("POST", "/tasks/t-none/logs", "good", b'{"chunks": [{"seq": "x"}]}'),
    ("POST", "/tasks/t-none/logs", "good", b'[]'),
    ("POST", "/tasks/t-none/logs", "good", b''),
    ("POST", "/tasks/t-none/logs", "good", b'\xe9q]9\x16'),
    ("POST", "/tasks/t-none/finish", "good", b'\xff'),
    ("POST", "/tasks/t-none/logs", "good", b'{"chunks": []}'),
]
KINDS = ["application/json", "application/json; charset=utf-8", "application/x+json", "text/plain", None]


@pytest.mark.parametrize(("method", "path", "token", "body"), CASES)
def test_the_gate_answers_as_the_route_does(both, method, path, token, body):
    _compare(both, method, path, token, body, "application/json")


@pytest.mark.parametrize("kind", KINDS)
def test_a_body_is_read_as_json_when_its_content_type_says_so_as_the_route_reads_it(both, kind):
    _compare(both, "POST", "/tasks/t-none/events", "good", b'{"status": "in_progress"}', kind)


def _compare(both, method: str, path: str, token: str | None, body: bytes | None, kind: str | None) -> None:
    gated, plain, good = both
    assert agent_gate.route({"type": "http", "method": method, "path": AGENT + path.split("?")[0]}) is not None
    given = good if token == "good" else token
    through_gate = _answer(gated, method, AGENT + path, given, body, kind)
    through_fastapi = _answer(plain, method, AGENT + path, given, body, kind)
    assert through_gate[0] == through_fastapi[0]
    assert _without_servers(through_gate[1]) == _without_servers(through_fastapi[1])


def test_only_the_agent_calls_of_every_task_are_gated():
    def gated(method: str, path: str) -> bool:
        return agent_gate.route({"type": "http", "method": method, "path": path}) is not None

    assert all(gated(m, AGENT + p) for m, p in [("GET", "/next"), ("POST", "/heartbeat"),
                                                  ("POST", "/tasks/t-1/events"), ("POST", "/tasks/t-1/logs"),
                                                  ("POST", "/tasks/t-1/finish")])
    assert not any(gated(m, p) for m, p in [
        ("POST", AGENT + "/next"), ("GET", AGENT + "/heartbeat"), ("GET", AGENT + "/tasks/t-1/finish"),
        ("GET", AGENT + "/tasks/t-1/bundle"), ("PUT", AGENT + "/tasks/t-1/outputs"),
        ("POST", AGENT + "/tasks/t-1/worker-log"), ("POST", AGENT + "/tasks/a/b/finish"),
        ("GET", "/api/v1/tasks"), ("GET", "/api/v1/agent"), ("GET", AGENT + "/next/"),
    ])
    assert not agent_gate.route({"type": "websocket", "path": AGENT + "/next"})


@pytest.mark.parametrize("through", ["gate", "fastapi"])
def test_an_agent_that_hangs_up_on_its_next_is_handed_no_task(tmp_path, through):
    """Its long poll ends when the agent's connection does: a task given to the worker then stays In Queue
    for the next call of a live agent, instead of being handed out to no one."""
    app = create_app(ServerConfig(data_dir=tmp_path / "home", warm_workers=0, sandbox="off"))
    plane = app.state.plane
    with plane.transaction() as session:
        user = users.create_user(session, "alice")[0]
        worker, token = worker_service.create_worker(
            session, user_id=None, pool="default", backend="local", size="X-Small", image="python", keep=False
        )
        spec = TaskSpec(file_name="main.py", bundle_sha256="0" * 64, bundle_size=123)
        task, _ = task_service.create_task(
            session, user, spec, bundle_present=True, images={"python": "here"}, sizes=builtin_sizes(), capacity=None
        )
    if through == "fastapi":
        async def served(scope, receive, send) -> None:
            await FastAPI.__call__(app, scope, receive, send)
    port, server, thread = _serve(app if through == "gate" else served)
    try:
        agent = socket.create_connection(("127.0.0.1", port))
        agent.sendall(f"GET {AGENT}/next?wait=20 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\r\n".encode())
        waiting = assignment_key(worker.name)
        wait_for(lambda: waiting in plane.notifier._waiters, timeout=10)
        agent.close()
        wait_for(lambda: waiting not in plane.notifier._waiters, timeout=10)  # not held for the 20 s
        with plane.transaction() as session:
            worker_service.give_task(session, session.get(WorkerRow, worker.name), session.get(TaskRow, task.id))
        time.sleep(0.3)
        with plane.reading() as session:
            assert session.get(TaskRow, task.id).status == TaskStatus.IN_QUEUE.value
    finally:
        server.should_exit = True
        thread.join(10)
        plane.database_threads.shutdown(wait=False)
