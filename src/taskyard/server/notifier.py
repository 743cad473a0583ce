"""Wake-ups inside one control-plane process: a state change wakes whoever waits on its key.

``notify`` may be called from any thread; ``poll`` is awaited on the server's event loop and
``wait_blocking`` is for plain threads (the scheduler). A wait that times out is not an error:
callers always re-read the store, so a missed wake-up only costs latency, never correctness.
"""

from __future__ import annotations

import asyncio
import threading
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class Notifier:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Future]]] = defaultdict(set)
        self._thread_events: dict[str, threading.Event] = {}

    def notify(self, *keys: str) -> None:
        with self._lock:
            for key in keys:
                for loop, future in self._waiters.pop(key, ()):
                    loop.call_soon_threadsafe(_resolve, future)
                event = self._thread_events.get(key)
                if event is not None:
                    event.set()

    def listen(self, *keys: str) -> None:
        """Keep a wake-up on ``keys`` for a :meth:`wait_blocking` to come, even one not yet begun."""
        with self._lock:
            for key in keys:
                self._thread_events.setdefault(key, threading.Event())

    async def poll(
        self,
        key: str,
        check: Callable[[], Awaitable[tuple[bool, T]]],
        timeout: float,
        gone: Callable[[], Awaitable[object]] | None = None,
    ) -> T:
        """Run ``check`` until it says ready, waking on ``key``; after ``timeout``, return its last value.

        The waiter is registered before each check, so a change between the check and the wait
        is never missed. Once ``gone`` returns (the caller has hung up), no check runs again: the last
        value is returned, for no one.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        left = asyncio.ensure_future(gone()) if gone is not None and timeout > 0 else None  # wait=0 never waits
        try:
            while True:
                entry = (loop, loop.create_future())
                with self._lock:
                    self._waiters[key].add(entry)
                try:
                    ready, value = await check()
                    remaining = deadline - loop.time()
                    if ready or remaining <= 0 or not await _woken(entry[1], left, remaining):
                        return value
                finally:
                    self._forget(key, entry)
        finally:
            if left is not None:
                left.cancel()

    def _forget(self, key: str, entry) -> None:
        with self._lock:
            waiting = self._waiters.get(key)
            if waiting is not None:
                waiting.discard(entry)
                if not waiting:
                    del self._waiters[key]

    def wait_blocking(self, key: str, timeout: float) -> bool:
        with self._lock:
            event = self._thread_events.setdefault(key, threading.Event())
        notified = event.wait(timeout)
        event.clear()
        return notified


async def _woken(wake: asyncio.Future, left: asyncio.Future | None, timeout: float) -> bool:
    """Wait for ``wake`` (or ``timeout``); False if ``left`` (the caller's hanging up) came first."""
    await asyncio.wait([wake] if left is None else [wake, left], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    return left is None or not left.done()


def _resolve(future: asyncio.Future) -> None:
    if not future.done():
        future.set_result(None)


def task_key(task_id: str) -> str:
    """Any change to the task: a status, a log chunk."""
    return f"task:{task_id}"


def ended_key(task_id: str) -> str:
    """The task has ended (a terminal status): what ``wait`` listens for."""
    return f"ended:{task_id}"


def logs_key(task_id: str) -> str:
    """New output of the task, or its end: what a follower of its log listens for (not each change of status)."""
    return f"logs:{task_id}"


def worker_key(name: str) -> str:
    """An order for the worker's agent (a kill, a command, terminate): what its heartbeat listens for."""
    return f"worker:{name}"


def command_key(command_id: str) -> str:
    """A command to a kept worker was answered: what its sender waits for."""
    return f"command:{command_id}"


def assignment_key(name: str) -> str:
    """A task given to the worker, or its end: what its agent's ``next`` listens for.

    Apart from :func:`worker_key`, so that giving a task does not wake the heartbeat too."""
    return f"next:{name}"


SCHEDULER = "scheduler"
FLOWS = "flows"  # wakes the flow driver (taskyard.server.flows) while runs go: a task ended, a run changed
NEW_FLOWS = "flows:new"  # wakes it while none goes: a run was submitted, started or killed
