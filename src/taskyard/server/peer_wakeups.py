"""Wake-ups between servers on one PostgreSQL, through ``LISTEN/NOTIFY``.

A commit that wakes keys on this server (see :class:`~taskyard.server.notifier.Notifier`) is
published to its peers too (but the scheduler's key: each server places what its own changes
queue, see :mod:`taskyard.server.plane`): a publisher thread sends the keys with ``pg_notify`` on a connection
of its own (batched, off the request's path), and a listener thread hands what the peers send to
this server's notifier. A long poll or a log follow on one server so wakes on a change made
through another. A lost wake-up (a server killed between its commit and the publish) only costs
latency: every waiter re-reads the store when its wait times out.
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading

from taskyard.server.notifier import Notifier

log = logging.getLogger("taskyard.server")
CHANNEL = "taskyard_wakeups"
MAX_PAYLOAD = 7000  # bytes; PostgreSQL refuses a payload of 8000 or more
RETRY = 1.0  # seconds before a lost connection is made again


class PeerWakeups:
    def __init__(self, url: str, notifier: Notifier) -> None:
        self.url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        self.notifier = notifier
        self.origin = secrets.token_hex(6)  # this server's own notifications come back to it: skipped
        self._outbox: queue.SimpleQueue[tuple[str, ...] | None] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, timeout: float = 10.0) -> None:
        """Start publishing and listening; returns once the listener listens (or after ``timeout``)."""
        for target, name in ((self._listen_loop, "listen"), (self._publish_loop, "publish")):
            thread = threading.Thread(target=target, name=f"taskyard-wakeups-{name}", daemon=True)
            thread.start()
            self._threads.append(thread)
        self._listening.wait(timeout)

    def publish(self, keys: tuple[str, ...]) -> None:
        """Send ``keys`` to the peers (from any thread; never blocks)."""
        self._outbox.put(keys)

    def stop(self) -> None:
        self._stop.set()
        self._outbox.put(None)
        for thread in self._threads:
            thread.join(timeout=5)

    def _publish_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._publish_on(self._connect())
            except Exception:
                log.exception("could not publish wake-ups to the peer servers; retrying")
                self._stop.wait(RETRY)

    def _publish_on(self, connection) -> None:
        with connection:
            while (keys := self._gather()) is not None:
                for payload in _payloads(self.origin, keys):
                    connection.execute("SELECT pg_notify(%s, %s)", (CHANNEL, payload))

    def _gather(self) -> set[str] | None:
        """The keys waiting to go out (at least one batch, waiting for it); None once stopped."""
        first = self._outbox.get()
        if first is None:
            return None
        keys = set(first)
        while True:
            try:
                more = self._outbox.get_nowait()
            except queue.Empty:
                return keys
            if more is None:
                self._outbox.put(None)
                return keys
            keys.update(more)

    def _listen_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen_on(self._connect())
            except Exception:
                log.exception("lost the wake-ups of the peer servers; listening again")
                self._stop.wait(RETRY)

    def _listen_on(self, connection) -> None:
        with connection:
            connection.execute(f"LISTEN {CHANNEL}")
            self._listening.set()
            while not self._stop.is_set():
                for note in connection.notifies(timeout=1.0):
                    origin, _, keys = note.payload.partition(" ")
                    if origin != self.origin and keys:
                        self.notifier.notify(*keys.split())

    def _connect(self):
        import psycopg

        return psycopg.connect(self.url, autocommit=True)


def _payloads(origin: str, keys: set[str]) -> list[str]:
    """``origin key key ...``, split so that each stays under PostgreSQL's payload limit."""
    payloads, current = [], origin
    for key in sorted(keys):
        if len(current) + len(key) + 1 > MAX_PAYLOAD:
            payloads.append(current)
            current = origin
        current += " " + key
    return payloads + [current] if current != origin else payloads
