"""Units of work of many threads committed together, each with its own result or error (both databases)."""

from __future__ import annotations

import threading
import time

import pytest
from sqlalchemy import event, func, select

from taskyard.errors import Conflict
from taskyard.server.db.group_commit import GroupCommit
from taskyard.server.db.models import UserRow
from taskyard.server.db.session import read_transaction
from taskyard.server.services import users


def _run_together(group: GroupCommit, works: list) -> list:
    """Run ``works`` from a thread each, all of them queued before any runs; their results or errors."""
    results: list = [None] * len(works)

    def call(index: int) -> None:
        try:
            results[index] = group.run(works[index])
        except Exception as exc:  # noqa: BLE001 - what the unit raised is its result here
            results[index] = exc

    threads = [threading.Thread(target=call, args=(index,)) for index in range(len(works))]
    with group._committing:  # as a batch that commits: the units that come meanwhile wait for the next
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while len(group._waiting) < len(works) and time.monotonic() < deadline:
            time.sleep(0.001)
    for thread in threads:
        thread.join(10)
    return results


def _commits(engine) -> list[int]:
    counted: list[int] = []
    event.listen(engine, "commit", lambda _conn: counted.append(1))
    return counted


def test_units_that_wait_together_commit_in_one_transaction_each_with_its_result(db):
    group, commits = GroupCommit(db), _commits(db.kw["bind"])
    names = [f"user{index}" for index in range(8)]
    results = _run_together(group, [lambda session, name=name: users.create_user(session, name)[0].name
                                    for name in names])
    assert results == names and len(commits) == 1
    with read_transaction(db) as session:
        assert sorted(session.scalars(select(UserRow.name))) == names


def test_a_unit_that_fails_fails_alone_and_the_others_commit(db):
    group, commits = GroupCommit(db), _commits(db.kw["bind"])

    def refused(session):
        users.create_user(session, "mallory")
        raise Conflict("no")

    results = _run_together(group, [lambda session: users.create_user(session, "alice")[0].name, refused,
                                    lambda session: users.create_user(session, "bob")[0].name])
    assert results[0] == "alice" and isinstance(results[1], Conflict) and results[2] == "bob"
    assert len(commits) == 2  # the batch failed; then each unit alone, the failing one rolled back
    with read_transaction(db) as session:
        assert sorted(session.scalars(select(UserRow.name))) == ["alice", "bob"]
        assert session.scalar(select(func.count()).select_from(UserRow)) == 2


def test_a_unit_alone_runs_at_once_in_the_calling_thread(db):
    group = GroupCommit(db)
    assert group.run(lambda session: threading.current_thread()) is threading.current_thread()
    with pytest.raises(Conflict):
        group.run(lambda session: (_ for _ in ()).throw(Conflict("refused")))
