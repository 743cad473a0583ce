"""A small JSON-over-HTTP client for the agent protocol, with retries and backoff."""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse

RETRY_FOR = 600.0  # give up on a control plane that has been unreachable this long


class Refused(Exception):
    """The control plane answered with an error that retrying will not fix (4xx)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status


class Unreachable(Exception):
    """The control plane could not be reached for ``RETRY_FOR`` seconds."""


class Client:
    def __init__(self, url: str, token: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or (443 if self._https else 80)
        self._prefix = parts.path.rstrip("/") + "/api/v1/agent"
        self._headers = {"Authorization": f"Bearer {token}"}
        self._local = threading.local()

    def call(self, method: str, path: str, body=None, *, timeout: float = 30, raw: bytes | None = None):
        """Send a request, retrying connection failures and 5xx answers with backoff; return JSON or bytes."""
        delay, deadline = 0.05, time.monotonic() + RETRY_FOR
        while True:
            try:
                return self._once(method, path, body, raw, timeout)
            except (OSError, http.client.HTTPException, _ServerError):
                self._drop()
                if time.monotonic() > deadline:
                    raise Unreachable(f"no answer from the control plane for {RETRY_FOR:.0f} s") from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _once(self, method: str, path: str, body, raw: bytes | None, timeout: float):
        headers = dict(self._headers)
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        elif raw is not None:
            headers["Content-Type"] = "application/octet-stream"
        conn = self._conn(timeout)
        conn.request(method, self._prefix + path, body=data, headers=headers)
        response = conn.getresponse()
        payload = response.read()
        if response.status >= 500:
            raise _ServerError(response.status)
        if response.status >= 400:
            raise Refused(response.status, payload.decode("utf-8", "replace"))
        if response.getheader("Content-Type", "").startswith("application/json"):
            return json.loads(payload)
        return payload

    def _conn(self, timeout: float) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=timeout)
            self._local.conn = conn
        conn.timeout = timeout
        if conn.sock is not None:
            conn.sock.settimeout(timeout)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


class _ServerError(Exception):
    pass
