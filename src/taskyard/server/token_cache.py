"""The users the server has recently seen by token, so that most requests skip the database.

An entry lives ``ttl`` seconds (``TASKYARD_TOKEN_CACHE_SECONDS``, default 1). A change to a user
made through this process (removed, token rotated) clears the cache at once; one made through
another process on the same database is seen here within ``ttl``. Keys are token hashes.
"""

from __future__ import annotations

import threading
import time

from taskyard.server.db.models import UserRow
from taskyard.server.services.users import check_expiry, hash_token

MAX_ENTRIES = 100_000


class TokenCache:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[UserRow, float]] = {}
        self._lock = threading.Lock()

    def get(self, token: str) -> UserRow | None:
        """The cached user of ``token`` (Unauthorized once it has expired), or None: ask the database."""
        entry = self._entries.get(hash_token(token))
        if entry is None or entry[1] < time.monotonic():
            return None
        check_expiry(entry[0])
        return entry[0]

    def put(self, token: str, user: UserRow) -> None:
        if self.ttl <= 0:
            return
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[hash_token(token)] = (user, time.monotonic() + self.ttl)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
