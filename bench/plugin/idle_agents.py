"""Many agents in one process, for the capacity bench: the real agent protocol, tasks that do no work.

Started by the ``idle`` backend with the file to count finished tasks in. It reads orders on stdin,
one a line: ``start NAME URL TOKEN`` plays a new worker's agent, ``stop NAME`` ends it; at the end
of stdin it exits. An agent heartbeats and takes tasks as a real one does; each task "runs" at once:
it is finished with exit code 0 and one line of stdout, its start told with its finish (as a real
agent tells the start of a task that ends at once). Each finish the control plane has acknowledged
adds one byte to the count file.
"""

from __future__ import annotations

import os
import sys
import threading
import time

from taskyard.agent.main import FIRST_HEARTBEAT
from taskyard.agent.protocol import Client, Refused, Unreachable

HEARTBEAT_WAIT = 5.0
NEXT_WAIT = 20.0
LINE = "Hello from simple task 1\n"


class IdleAgent:
    def __init__(self, url: str, token: str, finished: int) -> None:
        self.client = Client(url, token)
        self.finished = finished
        self.stopping = threading.Event()

    def start(self) -> None:
        for target in (self._heartbeat, self._serve):
            threading.Thread(target=self._guarded, args=(target,), daemon=True).start()

    def _guarded(self, target) -> None:
        try:
            target()
        except (Refused, Unreachable):
            pass  # the worker has ended: its token is no longer valid
        finally:
            self.stopping.set()

    def _heartbeat(self) -> None:
        if self.stopping.wait(FIRST_HEARTBEAT):  # as a real agent: none for a worker done by then
            return
        while not self.stopping.is_set():
            orders = self.client.call("POST", f"/heartbeat?wait={HEARTBEAT_WAIT}", timeout=HEARTBEAT_WAIT + 10)
            if orders.get("terminate"):
                return

    def _serve(self) -> None:
        while not self.stopping.is_set():
            answer = self.client.call("GET", f"/next?wait={NEXT_WAIT}", timeout=NEXT_WAIT + 10)
            if answer.get("terminate"):
                return
            if answer.get("task") and self._run(answer["task"]):
                return

    def _run(self, task: dict) -> bool:
        """The task, run as nothing: True when the control plane says this worker takes no more."""
        path = f"/tasks/{task['task_id']}"
        began = time.time()
        chunk = {"seq": task["log_seq"] + 1, "stream": "stdout", "ts": time.time(), "text": LINE}
        ended = time.time()
        body = {"exit_code": 0, "killed": False, "error": None, "reason": None, "chunks": [chunk],
                "exited_at": ended, "ended_at": ended, "started_at": began}
        answer = self.client.call("POST", path + "/finish", body)
        os.write(self.finished, b".")
        return bool(answer.get("terminate"))


def main() -> None:
    finished = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    agents: dict[str, IdleAgent] = {}
    for line in sys.stdin:
        order, name, *rest = line.split()
        if order == "start":
            agents[name] = agent = IdleAgent(rest[0], rest[1], finished)
            agent.start()
        elif order == "stop" and name in agents:
            agents.pop(name).stopping.set()


if __name__ == "__main__":
    main()
