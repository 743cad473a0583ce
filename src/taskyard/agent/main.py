"""The agent's main loop: take a task, run it, report, until the control plane says stop."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from pathlib import Path

from . import envs, tree
from .commands import WorkerCommands
from .isolation import Isolation
from .protocol import Client, Refused, Unreachable
from .runner import TaskRun, folders
from .standby import Standby

TOKEN_FILE = "agent.token"  # in the worker's folder: read once and removed

HEARTBEAT_WAIT = 5.0
NEXT_WAIT = 20.0
# Seconds from the agent's start to its first heartbeat. A fresh worker's task that ends at once is
# over by then (its agent exits on the finish's answer) and needs none: every call it makes says it
# lives, and the answers to its start and its logs carry a kill. Longer work hears kills within this.
FIRST_HEARTBEAT = 0.1


class Agent:
    def __init__(
        self, client: Client, worker_dir: Path, isolation: Isolation | None = None, python: envs.Settings | None = None
    ) -> None:
        self.client = client
        self.worker_dir = worker_dir
        self.isolation = isolation or Isolation({})
        self.python = python or envs.Settings()
        self.standby: Standby | None = None
        self.current: TaskRun | None = None
        self.commands = WorkerCommands(client, worker_dir, _owner(self.isolation))  # its owner's orders
        self.stopping = threading.Event()

    def loop(self) -> None:
        from . import archive  # noqa: F401  (tarfile is slow to import: do it before a task is waiting)

        try:
            self._serve()
        finally:
            self.commands.close()
            if self.standby is not None:
                self.standby.discard()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            self.standby = self.standby or self._start_standby()
            answer = self.client.call("GET", f"/next?wait={NEXT_WAIT}", timeout=NEXT_WAIT + 10)
            if answer.get("terminate"):
                return
            if answer.get("task"):
                standby, self.standby = self.standby, None
                run = self.current = self.commands.last_run = TaskRun(
                    self.client, self.worker_dir, answer["task"], self.isolation, standby, self.python
                )
                with self.commands.between_tasks:  # files go in and out only while no task process runs
                    run.run()
                self.current = None
                if run.worker_done:
                    return

    def _start_standby(self) -> Standby | None:
        """The sandbox for the next task, started now; None without one (the task then starts its own)."""
        writable = folders(self.worker_dir)
        try:
            return Standby.start(self.isolation, writable[0], writable, dict(os.environ))
        except OSError as exc:
            print(f"taskyard agent: could not start a sandbox ahead of the task: {exc}", file=sys.stderr)
            return None

    def heartbeat(self) -> None:
        if self.stopping.wait(FIRST_HEARTBEAT):
            return
        while not self.stopping.is_set():
            try:
                orders = self.client.call("POST", f"/heartbeat?wait={HEARTBEAT_WAIT}", timeout=HEARTBEAT_WAIT + 10)
            except (Refused, Unreachable):
                self.stop()
                return
            self.client.learn(orders.get("servers", ()))  # the servers live now, should this one die
            run = self.current
            if run is not None and run.task_id in orders.get("kill", ()):
                run.kill()
            for order in orders.get("commands", ()):
                self.commands.start(order)
            if orders.get("terminate"):
                self.stop()

    def stop(self) -> None:
        """Stop the task in hand (SIGTERM, then SIGKILL after its grace) and leave the loop."""
        self.stopping.set()
        run = self.current
        if run is not None:
            run.kill()


def main() -> None:
    worker_dir = Path(os.environ.get("TASKYARD_WORKER_DIR", os.getcwd()))
    client = Client(os.environ["TASKYARD_AGENT_URL"], _take_token(worker_dir))
    settings = json.loads(os.environ.get("TASKYARD_AGENT_WORKER") or "{}")
    agent = Agent(client, worker_dir, Isolation(settings), envs.Settings.from_worker(settings))
    tree.become_subreaper()
    signal.signal(signal.SIGTERM, lambda *_: _on_sigterm(agent))
    threading.Thread(target=agent.heartbeat, name="heartbeat", daemon=True).start()
    try:
        agent.loop()
    except Refused as exc:
        print(f"taskyard agent: the control plane refused us ({exc}); stopping", file=sys.stderr)
    except Unreachable as exc:
        print(f"taskyard agent: {exc}; stopping", file=sys.stderr)
    finally:
        agent.stop()


def _owner(isolation: Isolation) -> int | None:
    """The user files given to the task must belong to, when it is not the agent's own."""
    uid = isolation.task_uid
    return None if uid == os.getuid() else uid


def _take_token(worker_dir: Path) -> str:
    """The worker's token, from its file, which is removed at once: no other process holds it."""
    path = worker_dir / TOKEN_FILE
    token = path.read_text().strip()
    path.unlink()
    return token


def _on_sigterm(agent: Agent) -> None:
    agent.stop()
    if agent.current is None:
        raise SystemExit(0)
