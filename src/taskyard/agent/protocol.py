"""A small JSON-over-HTTP/1.1 client for the agent protocol, with keep-alive, retries and backoff.

It sits on ``socket`` rather than ``http.client`` because ``http.client`` imports ``email`` and
``ssl`` (about 40 ms, three times the rest of the agent) and every worker pays that at start.
It speaks only what the control plane answers: ``Content-Length`` or chunked bodies. HTTPS
control planes go through ``http.client``, imported only then.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from urllib.parse import urlsplit

RETRY_FOR = 600.0  # give up on a control plane that has been unreachable this long


class Refused(Exception):
    """The control plane answered with an error that retrying will not fix (4xx)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status


class Unreachable(Exception):
    """The control plane could not be reached for ``RETRY_FOR`` seconds."""


class _ServerError(Exception):
    pass


class _Endpoint:
    """One control plane's URL, taken apart once."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.url = url
        self.https = parts.scheme == "https"
        self.address = (parts.hostname or "127.0.0.1", parts.port or (443 if self.https else 80))
        self.prefix = parts.path.rstrip("/") + "/api/v1/agent"


class Client:
    """Calls the control plane; with several servers on one database, the one that answers.

    ``url`` is one URL, or the URLs of every server sharing the database, comma-separated. A call
    that cannot reach a server (or gets a 5xx) goes to the next one at once, and the client keeps
    to the one that answered; it waits (backoff) only after a whole round of them failed.
    """

    def __init__(self, url: str, token: str) -> None:
        self._endpoints = [_Endpoint(part.strip()) for part in url.split(",") if part.strip()]
        if not self._endpoints:
            raise ValueError("no control plane URL given")
        self._current = 0
        self._state = threading.Lock()  # over the endpoints and which one is in use
        self._auth = f"Bearer {token}"
        self._local = threading.local()

    @property
    def urls(self) -> list[str]:
        """The servers this client knows, the one in use first."""
        with self._state:
            endpoints, current = self._endpoints, self._current
        return [e.url for e in endpoints[current:] + endpoints[:current]]

    def learn(self, urls) -> None:
        """Take the live servers' URLs (as a heartbeat answer gives them); the one in use stays in use."""
        known = [url for url in dict.fromkeys(urls) if url]
        if not known or known == self.urls:
            return
        with self._state:
            in_use = self._endpoints[self._current]
            self._endpoints = [in_use, *(_Endpoint(url) for url in known if url != in_use.url)]
            self._current = 0

    def call(self, method: str, path: str, body=None, *, timeout: float = 30, raw: bytes | None = None):
        """Send a request, retrying connection failures and 5xx answers on the next server, with backoff
        after each round of them; return JSON or bytes."""
        delay, deadline = 0.05, time.monotonic() + RETRY_FOR
        data, kind = _encode(body, raw)
        failures = 0
        while True:
            endpoint, count = self._in_use()
            try:
                status, ctype, payload = self._exchange(endpoint, method, path, data, kind, timeout)
                return _decode(status, ctype, payload)
            except (OSError, ValueError, _ServerError):
                self._drop()
                if time.monotonic() > deadline:
                    raise Unreachable(f"no answer from the control plane for {RETRY_FOR:.0f} s") from None
                self._move_on(endpoint)
                failures += 1
                if failures % count == 0:  # every server was tried once more: wait before the next round
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)

    def _in_use(self) -> tuple[_Endpoint, int]:
        with self._state:
            return self._endpoints[self._current], len(self._endpoints)

    def _move_on(self, failed: _Endpoint) -> None:
        """The next server, unless another thread has moved on from ``failed`` already."""
        with self._state:
            if self._endpoints[self._current] is failed:
                self._current = (self._current + 1) % len(self._endpoints)

    def _exchange(self, endpoint: _Endpoint, method: str, path: str, data: bytes, kind: str | None, timeout: float):
        target = endpoint.prefix + path
        if endpoint.https:
            return self._exchange_https(endpoint, method, target, data, kind, timeout)
        conn = self._connection(endpoint, timeout)
        head = [f"{method} {target} HTTP/1.1", f"Host: {endpoint.address[0]}", f"Authorization: {self._auth}"]
        head.append(f"Content-Length: {len(data)}")
        if kind:
            head.append(f"Content-Type: {kind}")
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        return _read_response(self._local.reader, self)

    def _connection(self, endpoint: _Endpoint, timeout: float) -> socket.socket:
        """This thread's kept-alive connection to ``endpoint`` (one to another server is closed)."""
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._local.endpoint is not endpoint:
            self._drop()
            conn = None
        if conn is None:
            conn = socket.create_connection(endpoint.address, timeout=timeout)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn, self._local.reader, self._local.endpoint = conn, conn.makefile("rb"), endpoint
        conn.settimeout(timeout)
        return conn

    def close(self) -> None:
        """Close this thread's kept-alive connection (the next call opens another)."""
        self._drop()

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.reader.close()
            conn.close()
        self._local.conn = self._local.reader = self._local.endpoint = None

    def _exchange_https(
        self, endpoint: _Endpoint, method: str, target: str, data: bytes, kind: str | None, timeout: float
    ):
        import http.client

        conn = http.client.HTTPSConnection(*endpoint.address, timeout=timeout)
        try:
            headers = {"Authorization": self._auth, **({"Content-Type": kind} if kind else {})}
            conn.request(method, target, body=data, headers=headers)
            response = conn.getresponse()
            return response.status, response.getheader("Content-Type", ""), response.read()
        finally:
            conn.close()


def _encode(body, raw: bytes | None) -> tuple[bytes, str | None]:
    if body is not None:
        return json.dumps(body).encode(), "application/json"
    if raw is not None:
        return raw, "application/octet-stream"
    return b"", None


def _decode(status: int, ctype: str, payload: bytes):
    if status >= 500:
        raise _ServerError(status)
    if status >= 400:
        raise Refused(status, payload.decode("utf-8", "replace"))
    return json.loads(payload) if ctype.startswith("application/json") else payload


def _read_response(reader, client: Client) -> tuple[int, str, bytes]:
    status_line = reader.readline(65537)
    if not status_line:
        raise ConnectionError("the control plane closed the connection")
    status = int(status_line.split(None, 2)[1])
    headers = _read_headers(reader)
    if headers.get("transfer-encoding", "").lower() == "chunked":
        payload = _read_chunked(reader)
    else:
        payload = _read_exactly(reader, int(headers.get("content-length", "0")))
    if headers.get("connection", "").lower() == "close":
        client._drop()
    return status, headers.get("content-type", ""), payload


def _read_headers(reader) -> dict[str, str]:
    headers: dict[str, str] = {}
    while True:
        line = reader.readline(65537)
        if line in (b"\r\n", b"\n", b""):
            return headers
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()


def _read_chunked(reader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int(reader.readline(65537).split(b";", 1)[0], 16)
        if size == 0:
            _read_headers(reader)  # trailers, if any
            return b"".join(parts)
        parts.append(_read_exactly(reader, size))
        reader.readline(3)


def _read_exactly(reader, size: int) -> bytes:
    data = reader.read(size)
    if len(data) != size:
        raise ConnectionError("the control plane's answer was cut short")
    return data
