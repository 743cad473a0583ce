"""Commands for kept workers, held in memory between the user who sends one and the agent that answers.

A command is sent to a worker that is running (see :func:`services.worker_commands.reachable`):
the broker queues it and wakes the worker's heartbeat, whose answer carries it to the agent
(``AgentCommands.commands``); the agent answers with ``POST /agent/commands/{id}``, and the
sender, which waited, gets the result. Nothing of it is stored: a command is for a person at a
terminal, and one lost with a restart of the control plane just times out for its sender.
A worker's agent can answer only the commands sent to its own worker.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
from dataclasses import dataclass, field

from taskyard.errors import Conflict, ServerUnavailable
from taskyard.server.notifier import Notifier, worker_key


@dataclass
class _Sent:
    worker: str
    order: dict
    loop: asyncio.AbstractEventLoop
    answer: asyncio.Future = field(repr=False)


class CommandBroker:
    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier
        self._lock = threading.Lock()
        self._queued: dict[str, list[dict]] = {}
        self._sent: dict[str, _Sent] = {}

    async def ask(self, worker: str, order: dict, timeout: float) -> dict:
        """Send ``order`` (``{"kind": ..., ...}``) to ``worker``'s agent and return its result.

        Conflict with the agent's message if it could not carry it out; ServerUnavailable if it
        did not answer within ``timeout`` seconds."""
        loop = asyncio.get_running_loop()
        order = {**order, "id": secrets.token_hex(8)}
        sent = _Sent(worker, order, loop, loop.create_future())
        with self._lock:
            self._sent[order["id"]] = sent
            self._queued.setdefault(worker, []).append(order)
        self.notifier.notify(worker_key(worker))
        try:
            answer = await asyncio.wait_for(sent.answer, timeout)
        except asyncio.TimeoutError:
            raise ServerUnavailable(f"worker {worker} did not answer within {timeout:g} s") from None
        finally:
            self._forget(worker, order["id"])
        if answer.get("error") is not None:
            raise Conflict(f"worker {worker}: {answer['error']}")
        return answer.get("result") or {}

    def pending(self, worker: str) -> list[dict]:
        """The orders for ``worker`` not yet handed to its agent, now handed (each is handed once)."""
        with self._lock:
            return self._queued.pop(worker, [])

    def answer(self, worker: str, command_id: str, answer: dict) -> bool:
        """Hand the agent's answer to the sender; False if no such command of this worker waits."""
        with self._lock:
            sent = self._sent.get(command_id)
        if sent is None or sent.worker != worker:
            return False
        sent.loop.call_soon_threadsafe(_settle, sent.answer, answer)
        return True

    def _forget(self, worker: str, command_id: str) -> None:
        with self._lock:
            self._sent.pop(command_id, None)
            queued = [order for order in self._queued.get(worker, ()) if order["id"] != command_id]
            if queued:
                self._queued[worker] = queued
            else:
                self._queued.pop(worker, None)


def _settle(future: asyncio.Future, answer: dict) -> None:
    if not future.done():
        future.set_result(answer)
