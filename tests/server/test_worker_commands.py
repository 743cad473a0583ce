"""Commands to kept workers in the store, on SQLite and PostgreSQL: each handed once, answered only by
its own worker's agent, removed by its sender or swept once its sender stopped waiting."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta

from sqlalchemy import select

from taskyard.server import worker_commands as broker_module
from taskyard.server.db.models import WorkerCommandRow, WorkerRow, utcnow
from taskyard.server.db.session import transaction
from taskyard.server.notifier import Notifier, command_key
from taskyard.server.services import secrets as secret_service
from taskyard.server.services import worker_commands as commands
from taskyard.server.services.worker_commands import Sealed
from taskyard.server.vault import Vault
from taskyard.server.worker_commands import CommandBroker
from taskyard.status import WorkerStatus

from support import wait_for

ORDER = Sealed(b"sealed order", "k1")
ANSWER = Sealed(b"sealed answer", "k1")


def _worker(db, name: str) -> str:
    with transaction(db) as session:
        session.add(
            WorkerRow(name=name, pool="default", backend="local", status=WorkerStatus.RUNNING.value, size="X-Small",
                      image="python", token_hash=name.ljust(64, "0"), keep=True)
        )  # fmt: skip
    return name


def _send(db, worker: str, command_id: str, seconds: float = 60) -> None:
    with transaction(db) as session:
        commands.send(session, worker, command_id, ORDER, utcnow() + timedelta(seconds=seconds))


def _hand(db, worker: str) -> list[Sealed]:
    with transaction(db) as session:
        return commands.hand(session, worker)


def _settle(db, worker: str, command_id: str) -> bool:
    with transaction(db) as session:
        return commands.settle(session, worker, command_id, ANSWER)


def test_an_order_is_handed_once_even_to_heartbeats_at_the_same_time(db):
    worker = _worker(db, "tw-once")
    for number in range(5):
        _send(db, worker, f"c{number}")
    handed: list[Sealed] = []
    barrier = threading.Barrier(4)

    def heartbeat() -> None:
        barrier.wait()
        found = _hand(db, worker)
        handed.extend(found)

    threads = [threading.Thread(target=heartbeat) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert handed == [ORDER] * 5
    assert _hand(db, worker) == []


def test_only_its_own_workers_agent_answers_a_command_and_only_once_handed(db):
    mine, other = _worker(db, "tw-mine"), _worker(db, "tw-other")
    _send(db, mine, "c1")
    assert not _settle(db, mine, "c1")  # not handed yet: no agent has it
    assert _hand(db, mine) == [ORDER] and _hand(db, other) == []
    assert not _settle(db, other, "c1")
    with transaction(db) as session:
        assert commands.take_answer(session, "c1") is None
    assert _settle(db, mine, "c1")
    assert not _settle(db, mine, "c1")  # answered already
    with transaction(db) as session:
        assert commands.take_answer(session, "c1") == ANSWER
    with transaction(db) as session:
        assert session.scalar(select(WorkerCommandRow.id)) is None  # the answer went with its row


def test_a_command_whose_sender_stopped_waiting_is_not_handed_and_is_swept(db):
    worker = _worker(db, "tw-late")
    _send(db, worker, "gone", seconds=-1)  # its sender's wait is over (its server died)
    assert _hand(db, worker) == []
    _send(db, worker, "new")
    with transaction(db) as session:
        commands.sweep(session)
    with transaction(db) as session:
        assert list(session.scalars(select(WorkerCommandRow.id))) == ["new"]


def test_the_broker_keeps_the_order_and_the_answer_sealed_and_removes_them_once_read(db, tmp_path, monkeypatch):
    monkeypatch.setattr(broker_module, "RECHECK", 60.0)  # the sender wakes when this test says, not on its own
    worker, notifier = _worker(db, "tw-sealed"), Notifier()
    broker = CommandBroker(db, notifier, Vault.load(tmp_path, None))
    stored: dict[str, bytes | None] = {}

    def agent() -> None:  # a heartbeat hands the order, the agent answers, the commit wakes the sender
        handed = wait_for(lambda: _hand(db, worker))
        order = asyncio.run(broker.orders(handed))[0]
        assert asyncio.run(broker.answer(worker, order["id"], {"result": {"stdout": f"{order['argv'][0]} back"}}))
        with transaction(db) as session:
            row = session.get(WorkerCommandRow, order["id"])
            stored.update(order=row.order, answer=row.answer)
        notifier.notify(command_key(order["id"]))

    thread = threading.Thread(target=agent)
    thread.start()
    result = asyncio.run(broker.ask(worker, {"kind": "exec", "argv": ["the user's data"]}, timeout=60))
    thread.join(10)
    assert result == {"stdout": "the user's data back"}
    assert stored["order"] and b"user's data" not in stored["order"]
    assert stored["answer"] and b"user's data" not in stored["answer"]
    with transaction(db) as session:
        assert session.scalar(select(WorkerCommandRow.id)) is None


def test_a_key_rotation_seals_the_commands_on_their_way_again(db, tmp_path):
    worker, vault = _worker(db, "tw-rotated"), Vault.load(tmp_path, None)
    with transaction(db) as session:
        commands.send(session, worker, "c1", Sealed(*vault.seal('{"kind": "exec"}')), utcnow() + timedelta(minutes=1))
    vault.add_key()
    with transaction(db) as session:
        assert secret_service.reseal(session, vault) == 1
    vault.drop_old_keys()
    (order,) = _hand(db, worker)
    assert order.key_id == vault.key_id and vault.open(*order) == '{"kind": "exec"}'
