"""Commands for kept workers, between the user who sends one and the agent that answers, through the store.

A command is sent to a worker that is running (see :func:`services.worker_commands.reachable`):
the broker stores it, sealed by the vault, and wakes the worker's heartbeat, whose answer carries it
to the agent (``AgentCommands.commands``); the agent answers with ``POST /agent/commands/{id}``,
and the sender, which waits on the command's notifier key, reads the answer and removes the row.

Each step may happen on another server of the same PostgreSQL database: the heartbeat may be held
by a peer, the answer may reach a third one. The rows are what they share, and the peers' wake-ups
(:mod:`taskyard.server.peer_wakeups`) carry the worker's key and the command's key between them; a
wake-up lost on its way costs at most :data:`RECHECK` seconds, as the sender re-reads the row. A
command outlives neither its sender's wait nor, for long, a server that died while waiting: the
next command sent sweeps it. A worker's agent can answer only the commands sent to its own worker.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import Callable
from datetime import timedelta
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
T = TypeVar("T")


class CommandBroker:
    def __init__(self, sessions: sessionmaker[Session], notifier: Notifier, vault: Vault) -> None:
        self.sessions = sessions
        self.notifier = notifier
        self.vault = vault

    async def ask(self, worker: str, order: dict, timeout: float) -> dict:
        """Send ``order`` (``{"kind": ..., ...}``) to ``worker``'s agent and return its result.

        Conflict with the agent's message if it could not carry it out; ServerUnavailable if it
        did not answer within ``timeout`` seconds."""
        command_id = secrets.token_hex(8)
        sealed = await run_in_threadpool(self._seal, {**order, "id": command_id})
        expires_at = utcnow() + timedelta(seconds=timeout)
        await self._run(lambda s: command_service.send(s, worker, command_id, sealed, expires_at))
        try:
            found = await self._answer_of(command_id, timeout)
        finally:
            await self._run(lambda s: command_service.forget(s, command_id))
        if found is None:
            raise ServerUnavailable(f"worker {worker} did not answer within {timeout:g} s")
        answer = await run_in_threadpool(self._open_answer, worker, found)
        if answer.get("error") is not None:
            raise Conflict(f"worker {worker}: {answer['error']}")
        return answer.get("result") or {}

    async def orders(self, sealed: list[Sealed]) -> list[dict]:
        """The orders a heartbeat handed (:func:`services.worker_commands.hand`), opened outside its
        transaction; one this server cannot open is left out (its sender times out)."""
        return await run_in_threadpool(self._open_orders, sealed) if sealed else []

    async def answer(self, worker: str, command_id: str, answer: dict) -> bool:
        """Store the agent's answer for its sender; False if no such command of this worker waits."""
        sealed = await run_in_threadpool(self._seal, answer)
        return await self._run(lambda s: command_service.settle(s, worker, command_id, sealed))

    async def _answer_of(self, command_id: str, timeout: float) -> Sealed | None:
        """The command's sealed answer, waited for up to ``timeout`` seconds; None if none came."""

        async def check() -> tuple[bool, Sealed | None]:
            found = await self._run(lambda s: command_service.answer_of(s, command_id))
            return found is not None, found

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            found = await self.notifier.poll(command_key(command_id), check, min(RECHECK, deadline - loop.time()))
            if found is not None or loop.time() >= deadline:
                return found

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

    async def _run(self, work: Callable[[Session], T]) -> T:
        def unit() -> T:
            with transaction(self.sessions) as session:
                return work(session)

        return await run_in_threadpool(unit)
