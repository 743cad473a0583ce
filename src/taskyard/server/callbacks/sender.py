"""The thread that sends callbacks: claim due deliveries, POST each outside any transaction, record it."""

from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime

import httpx
from sqlalchemy.orm import Session, sessionmaker

from taskyard.server.callbacks import delivery, outbox
from taskyard.server.config import CallbackSettings
from taskyard.server.db.models import utcnow
from taskyard.server.db.session import transaction
from taskyard.server.notifier import Notifier
from taskyard.server.vault import Vault

log = logging.getLogger("taskyard.server.callbacks")
SENDERS = 8  # callbacks in flight at once: a slow receiver holds one of them only
IDLE = 5.0  # the longest sleep between two looks at the outbox (a commit that queues one wakes it sooner)
MAX_ERROR = 500  # the most of an error's text an attempt keeps


class CallbackSender:
    """Sends the outbox. ``start`` and ``stop`` are called once each, from the server's start and end."""

    def __init__(
        self, sessions: sessionmaker[Session], notifier: Notifier, vault: Vault, settings: CallbackSettings
    ) -> None:
        self.sessions, self.notifier, self.vault, self.settings = sessions, notifier, vault, settings
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(SENDERS, thread_name_prefix="taskyard-callback")
        self._in_flight = threading.Semaphore(SENDERS)
        self._http = httpx.Client(timeout=settings.timeout, follow_redirects=False, trust_env=False)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="taskyard-callbacks", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self.notifier.notify(outbox.WAKE)
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._pool.shutdown(wait=False, cancel_futures=True)
        self._http.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                pause = self._pause() if self.tick() else IDLE  # all busy: a sending thread that ends wakes it
            except Exception:  # the store is away for a moment: try again soon, never die
                log.exception("the callback sender failed to read the outbox")
                pause = 1.0
            self.notifier.wait_blocking(outbox.WAKE, pause)

    def tick(self) -> bool:
        """Hand every due delivery to a sending thread, as many as there are free ones; False if none was free.

        The deliveries are claimed and their requests built in one short transaction.
        """
        free = self._free_slots()
        if not free:
            return False
        lease = self.settings.timeout + 5  # a sender that died lets go of it then
        log_bytes = int(self.settings.log_tail_mb * 1024 * 1024)
        with transaction(self.sessions) as session:
            claimed = outbox.claim(session, utcnow(), lease, free)
            requests = [delivery.outgoing(session, self.vault, delivery_id, log_bytes) for delivery_id in claimed]
        ready = [request for request in requests if request is not None]
        for _ in range(free - len(ready)):
            self._in_flight.release()
        for request in ready:
            self._pool.submit(self._deliver, request)
        return True

    def _free_slots(self) -> int:
        count = 0
        while count < SENDERS and self._in_flight.acquire(blocking=False):
            count += 1
        return count

    def _pause(self) -> float:
        with transaction(self.sessions) as session:
            due = outbox.next_due(session, utcnow())
        return IDLE if due is None else max(0.01, min(IDLE, _seconds_until(due)))

    def _deliver(self, request: delivery.Outgoing) -> None:
        try:
            answer = self._post(request)
            with transaction(self.sessions) as session:
                outbox.record(session, self.settings, request.delivery_id, answer)
        except Exception:
            log.exception(
                "callback delivery %s failed unexpectedly; it is tried again when its lease ends", request.delivery_id
            )
        finally:
            self._in_flight.release()
            self.notifier.notify(outbox.WAKE)

    def _post(self, request: delivery.Outgoing) -> outbox.Answer:
        started = time.perf_counter()
        try:
            response = self._http.post(request.url, content=request.body, headers=request.headers)
        except httpx.HTTPError as exc:
            return outbox.Answer(None, _error_text(exc), _ms(started))
        error = None if response.is_success else f"HTTP {response.status_code}: {response.text[:MAX_ERROR]}"
        return outbox.Answer(response.status_code, error, _ms(started), _retry_after(response))


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _error_text(exc: httpx.HTTPError) -> str:
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR]


def _retry_after(response: httpx.Response) -> float | None:
    given = response.headers.get("retry-after", "")
    return float(given) if given.isdigit() else None


def _seconds_until(when: datetime) -> float:
    return (when - utcnow()).total_seconds()
