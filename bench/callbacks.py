"""callbacks: from a task's exit to its callback arriving at a receiver on 127.0.0.1, median of 20.

The task's last statement prints ``time.time()``; the receiver (in this process, a threaded HTTP
server) takes ``time.time()`` when the request's body is read, and the sample is the difference
(one machine, one clock). In between: the agent's finish report, the terminal status and the
outbox row in one transaction, the sender thread woken on commit, the body built (log tail,
signature) and POSTed. Warm pool; each run waits for the previous callback, then for the pool to settle.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from taskyard.sdk import submit

from .figures import BenchError, Figure, Target, spread
from .harness import expected_warm, progress, running, settle, task_folder
from .plan import Plan

TASK = "import time\nprint(repr(time.time()), flush=True)\n"
ARRIVAL_TIMEOUT = 60.0


def run(plan: Plan) -> list[Figure]:
    arrivals: queue.Queue[tuple[float, dict]] = queue.Queue()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(arrivals))
    threading.Thread(target=httpd.serve_forever, name="bench-receiver", daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/hook"
    try:
        samples = _samples(plan, url, arrivals)
    finally:
        httpd.shutdown()
        httpd.server_close()
    progress(f"callbacks: {len(samples)} callbacks")
    name = "task exit to callback received (warm pool, receiver on 127.0.0.1)"
    return [spread("callbacks", name, "s", samples, target=Target("<", 0.05))]


def _samples(plan: Plan, url: str, arrivals: queue.Queue) -> list[float]:
    samples = []
    with task_folder({"stamp.py": TASK}) as folder, running("callbacks") as server:
        client = server.client()
        warm = expected_warm(server.env)
        for index in range(plan.warmup + plan.callback_runs):
            settle(client, warm)
            task = submit("stamp.py", folder, client=client, callback_url=url)
            arrived, body = _next(arrivals, task.id)
            if not body["success"]:
                raise BenchError(f"callbacks: task {task.id} reported {body['status']}: {body['logs'][-500:]}")
            if index >= plan.warmup:
                samples.append(arrived - float(body["logs"].strip().splitlines()[-1]))
    return samples


def _next(arrivals: queue.Queue, task_id: str) -> tuple[float, dict]:
    try:
        arrived, body = arrivals.get(timeout=ARRIVAL_TIMEOUT)
    except queue.Empty:
        raise BenchError(f"callbacks: no callback for task {task_id} in {ARRIVAL_TIMEOUT:.0f} s") from None
    if body["task_id"] != task_id:
        raise BenchError(f"callbacks: a callback for {body['task_id']} came while waiting for {task_id}")
    return arrived, body


def _handler(arrivals: queue.Queue) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", 0)))
            arrivals.put((time.time(), json.loads(body)))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    return Handler
