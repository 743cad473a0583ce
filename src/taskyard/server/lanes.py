"""Each backend's calls on threads of their own, each watched against a timeout.

The scheduler never calls a backend on its own thread: it hands each launch, poll and terminate
to the backend's :class:`Lane` and goes on. A slow or hung backend so fills only its own lane;
the other backends' pools keep being served. A lane tells what is wrong with its backend
(:meth:`Lane.fault`): a call that has run past the timeout, or the last call that failed. The
scheduler shows it on the backend's pools and in the status messages of their tasks.

Python cannot cancel a thread: a call past its timeout is given up (its ``on_timeout`` runs once,
on the scheduler's thread) but goes on in the background, and whatever it returns later is
applied by its own code, which must check that what it started is still wanted. The lane's
threads are daemons, so a call that never returns does not keep the server from exiting.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from taskyard.backends.base import Backend

log = logging.getLogger("taskyard.lanes")

HEAD_START = 0.25  # seconds: a start goes ahead of the calls that have waited less than this, not of older ones


@dataclass
class Call:
    what: str  # e.g. "start of worker w-1a2b", for messages
    on_timeout: Callable[[], None] | None = None
    started: float | None = None  # monotonic; None while it waits for one of the lane's threads
    timed_out: bool = False


@dataclass
class Lane:
    """One backend and the threads its calls run on."""

    name: str  # the backend's name in the configuration
    backend: Backend
    timeout: float = 30.0  # seconds a call may run before it is given up
    threads: int = 4
    warm_after: float = 0.0  # monotonic time before which no warm worker is started on it
    _calls: dict[int, Call] = field(default_factory=dict)  # waiting or running
    _failure: str | None = None
    _lock: threading.Condition = field(default_factory=threading.Condition)
    _ids: itertools.count = field(default_factory=itertools.count)
    _queue: queue.PriorityQueue = field(default_factory=queue.PriorityQueue)  # (when due, id, work)

    def __post_init__(self) -> None:
        for number in range(self.threads):
            name = f"taskyard-backend-{self.name}-{number}"
            threading.Thread(target=self._serve, name=name, daemon=True).start()

    def submit(
        self, what: str, work: Callable[[], None], *, on_timeout: Callable[[], None] | None = None, first: bool = False
    ) -> None:
        """Run ``work`` on the lane's threads; ``on_timeout`` runs (from :meth:`check`) if it takes too long.

        A ``first`` call (a worker's start, which a task may be waiting for) goes ahead of the others
        that have waited less than :data:`HEAD_START`. Not of older ones: under a steady stream of starts
        the stops would wait for ever, and the workers they free (and what they hold) pile up.
        """
        call_id = next(self._ids)
        with self._lock:
            self._calls[call_id] = Call(what, on_timeout)
        self._queue.put((time.monotonic() + (0.0 if first else HEAD_START), call_id, work))

    def _serve(self) -> None:
        while (item := self._queue.get())[2] is not None:
            self._run(item[1], item[2])

    def _run(self, call_id: int, work: Callable[[], None]) -> None:
        with self._lock:
            self._calls[call_id].started = time.monotonic()
        try:
            work()
        except Exception:
            log.exception("a call to backend %s failed", self.name)
        finally:
            with self._lock:
                self._calls.pop(call_id, None)
                self._lock.notify_all()

    def pending(self, what: str) -> bool:
        """Is a call described as ``what`` waiting or running?"""
        with self._lock:
            return any(call.what == what for call in self._calls.values())

    def failed(self, what: str, exc: BaseException) -> None:
        """The backend refused or failed a call: that is its fault until a later call succeeds."""
        self._failure = f"{what} failed: {exc}"

    def answered(self) -> None:
        """A call succeeded: the backend answers."""
        self._failure = None

    def check(self) -> None:
        """Give up the calls past the timeout: each one's ``on_timeout`` runs, once."""
        now = time.monotonic()
        with self._lock:
            late = [c for c in self._calls.values() if c.started and not c.timed_out and now - c.started > self.timeout]
            for call in late:
                call.timed_out = True
        for call in late:
            log.warning("backend %s: %s has not returned in %g s", self.name, call.what, self.timeout)
            if call.on_timeout is not None:
                call.on_timeout()

    def stalled(self) -> bool:
        """Is a call running past the timeout? Then nothing new is started on this backend."""
        with self._lock:
            return any(call.timed_out for call in self._calls.values())

    def fault(self) -> str | None:
        """What is wrong with the backend now, for people; None when it answers."""
        with self._lock:
            late = next((call for call in self._calls.values() if call.timed_out), None)
        if late is not None:
            return f"not answering: the {late.what} has not returned in {self.timeout:g} s"
        return self._failure

    def close(self) -> None:
        """Wait up to the timeout for the calls under way, then let the backend go (calls still running are left)."""
        with self._lock:
            self._lock.wait_for(lambda: not self._calls, timeout=self.timeout)
        for _ in range(self.threads):
            self._queue.put((float("inf"), next(self._ids), None))
        self.backend.close()
