"""Short units of work of many threads, committed together: one transaction for what arrived meanwhile.

The scheduler's lanes end each worker's start and stop with a statement or two (its handle stored,
its end written). With many workers starting and stopping at once, each such transaction waited
for the write lock behind the others, and then paid its own BEGIN and COMMIT. Here the first thread
to come runs the units that are waiting, its own among them, in one transaction; those that come
while it commits wait for the next. One unit alone is run at once, as before: nothing waits to be
batched. A unit that fails fails the batch: each of its units is then run again in a transaction of
its own, so that each gets its own result or error. So a unit does its work in the database alone
(what it writes is rolled back with the batch), and may run twice.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy.orm import Session, sessionmaker

from taskyard.server.db.session import transaction

T = TypeVar("T")
Unit = tuple[Callable[[Session], Any], Future]


class GroupCommit:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._waiting: list[Unit] = []
        self._lock = threading.Lock()  # guards _waiting
        self._committing = threading.Lock()  # held by the thread that runs a batch

    def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in a transaction, maybe with other threads' units; its result, or its error."""
        done: Future = Future()
        with self._lock:
            self._waiting.append((work, done))
        with self._committing:
            if not done.done():  # not run by the batch before: this thread runs what waits, its own unit too
                batch = self._take()
                try:
                    self._commit(batch)
                finally:  # an error that is not an Exception (an interrupt): none of the others waits for good
                    for _, waiting in batch:
                        if not waiting.done():
                            waiting.set_exception(RuntimeError("the batch this unit was in did not run"))
        return done.result()

    def _take(self) -> list[Unit]:
        with self._lock:
            batch, self._waiting = self._waiting, []
        return batch

    def _commit(self, batch: list[Unit]) -> None:
        try:
            with transaction(self.sessions) as session:
                results = [work(session) for work, _ in batch]
        except Exception as exc:
            if len(batch) == 1:
                batch[0][1].set_exception(exc)
            else:
                for unit in batch:
                    self._commit([unit])
            return
        for (_, done), result in zip(batch, results):
            done.set_result(result)
