"""Commands for kept workers, between the user who sends one and the agent that answers, through the store.

A command is sent to a worker that is running (see :func:`services.worker_commands.reachable`):
the broker stores it, sealed by the vault, and wakes the worker's heartbeat, whose answer carries it
to the agent (``AgentCommands.commands``); the agent answers with ``POST /agent/commands/{id}``,
and the sender, which waits on the command's notifier key, takes the answer with the row.

Each step may happen on another server of the same PostgreSQL database: the heartbeat may be held
by a peer, the answer may reach a third one. The rows are what they share, and the peers' wake-ups
(:mod:`taskyard.server.peer_wakeups`) carry the worker's key and the command's key between them. A
wake-up lost on its way costs only time: the sender re-reads the row every :data:`RECHECK` seconds,
and a heartbeat looks for orders again when its long poll ends. A
command outlives neither its sender's wait nor, for long, a server that died while waiting: a
command sent later sweeps it (at most every :data:`SWEEP_EVERY` seconds). A worker's agent can
answer only the commands sent to its own worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from taskyard.errors import Conflict, ServerUnavailable
from taskyard.server.db.models import utcnow
from taskyard.server.db.session import transaction
from taskyard.server.notifier import Notifier, command_key
from taskyard.server.services import worker_commands as command_service
from taskyard.server.services.worker_commands import Sealed
from taskyard.server.vault import KeyUnknown, Vault

log = logging.getLogger("taskyard.server")
RECHECK = 2.0  # seconds between two reads of a command's row while its sender waits for the answer
SWEEP_EVERY = 60.0  # seconds between two sweeps of the commands left behind by a server that died
T = TypeVar("T")


class CommandBroker:
    def __init__(self, sessions: sessionmaker[Session], notifier: Notifier, vault: Vault) -> None:
        self.sessions = sessions
        self.notifier = notifier
        self.vault = vault
        self._swept_at = -SWEEP_EVERY  # the first command sent sweeps

    async def ask(self, worker: str, order: dict, timeout: float) -> dict:
        """Send ``order`` (``{"kind": ..., ...}``) to ``worker``'s agent and return its result.

        Conflict with the agent's message if it could not carry it out; ServerUnavailable if it
        did not answer within ``timeout`` seconds."""
        command_id = secrets.token_hex(8)
        expires_at = utcnow() + timedelta(seconds=timeout)
        await run_in_threadpool(self._send, worker, {**order, "id": command_id}, expires_at)
        answer = None
        try:
            answer = await self._answer_of(worker, command_id, timeout)
        finally:
            if answer is None:  # else its row went with its answer
                await run_in_threadpool(self._in_transaction, lambda s: command_service.forget(s, command_id))
        if answer is None:
            raise ServerUnavailable(f"worker {worker} did not answer within {timeout:g} s")
        if answer.get("error") is not None:
            raise Conflict(f"worker {worker}: {answer['error']}")
        return answer.get("result") or {}

    async def orders(self, sealed: list[Sealed]) -> list[dict]:
        """The orders a heartbeat handed (:func:`services.worker_commands.hand`), opened outside its
        transaction; one this server cannot open is left out (its sender times out)."""
        return await run_in_threadpool(self._open_orders, sealed) if sealed else []

    async def answer(self, worker: str, command_id: str, answer: dict) -> bool:
        """Store the agent's answer for its sender; False if no such command of this worker waits."""
        return await run_in_threadpool(self._settle, worker, command_id, answer)

    async def _answer_of(self, worker: str, command_id: str, timeout: float) -> dict | None:
        """The command's answer (its row removed), waited for up to ``timeout`` seconds; None if none came."""
        sent = True

        async def check() -> tuple[bool, dict | None]:
            nonlocal sent
            if sent:  # just sent, so not answered yet; and the notifier tells of an answer from now on
                sent = False
                return False, None
            found = await run_in_threadpool(self._take_answer, worker, command_id)
            return found is not None, found

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = await self.notifier.poll(command_key(command_id), check, min(RECHECK, deadline - loop.time()))
            if found is not None or loop.time() >= deadline:
                return found

    # -- on a worker thread: sealing and opening outside the transaction, each step in one hop --------

    def _send(self, worker: str, order: dict, expires_at: datetime) -> None:
        sealed = self._seal(order)
        self._in_transaction(lambda s: command_service.send(s, worker, order["id"], sealed, expires_at))
        if time.monotonic() - self._swept_at >= SWEEP_EVERY:
            self._swept_at = time.monotonic()
            self._in_transaction(command_service.sweep)

    def _settle(self, worker: str, command_id: str, answer: dict) -> bool:
        sealed = self._seal(answer)
        return self._in_transaction(lambda s: command_service.settle(s, worker, command_id, sealed))

    def _take_answer(self, worker: str, command_id: str) -> dict | None:
        found = self._in_transaction(lambda s: command_service.take_answer(s, command_id))
        return None if found is None else self._open_answer(worker, found)

    def _seal(self, value: dict) -> Sealed:
        return Sealed(*self.vault.seal(json.dumps(value)))

    def _open_orders(self, sealed: list[Sealed]) -> list[dict]:
        orders = []
        for token, key_id in sealed:
            try:
                orders.append(json.loads(self.vault.open(token, key_id)))
            except KeyUnknown as exc:
                log.warning("a command to a kept worker was left out: %s (do the servers share the vault key?)", exc)
        return orders

    def _open_answer(self, worker: str, sealed: Sealed) -> dict:
        try:
            return json.loads(self.vault.open(*sealed))
        except KeyUnknown as exc:
            raise Conflict(f"worker {worker} answered, but its answer cannot be read here: {exc}") from None

    def _in_transaction(self, work: Callable[[Session], T]) -> T:
        with transaction(self.sessions) as session:
            return work(session)
