"""Which worker an agent token names, known without the database for the workers this server started.

A token names one worker for good, so the name can be kept as long as this server runs; whether
that worker may still call is checked in each request's own transaction. The scheduler tells it
each token as it launches the worker, so even an agent's first call skips the lookup; a token
this server did not hand out (another server's, on a shared PostgreSQL) is looked up once.
Keys are token hashes: no token is kept in clear.
"""

from __future__ import annotations

import threading

from taskyard.server.services.users import hash_token

MAX_ENTRIES = 100_000


class WorkerTokens:
    def __init__(self) -> None:
        self._names: dict[str, str] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> str | None:
        return self._names.get(hash_token(token))

    def put(self, token: str, name: str) -> None:
        with self._lock:
            if len(self._names) >= MAX_ENTRIES:
                self._names.clear()  # cheap to refill: one lookup per worker still calling
            self._names[hash_token(token)] = name
