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


class Client:
    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self._https = parts.scheme == "https"
        self._address = (parts.hostname or "127.0.0.1", parts.port or (443 if self._https else 80))
        self._prefix = parts.path.rstrip("/") + "/api/v1/agent"
        self._auth = f"Bearer {token}"
        self._local = threading.local()

    def call(self, method: str, path: str, body=None, *, timeout: float = 30, raw: bytes | None = None):
        """Send a request, retrying connection failures and 5xx answers with backoff; return JSON or bytes."""
        delay, deadline = 0.05, time.monotonic() + RETRY_FOR
        data, kind = _encode(body, raw)
        while True:
            try:
                status, ctype, payload = self._exchange(method, self._prefix + path, data, kind, timeout)
                return _decode(status, ctype, payload)
            except (OSError, ValueError, _ServerError):
                self._drop()
                if time.monotonic() > deadline:
                    raise Unreachable(f"no answer from the control plane for {RETRY_FOR:.0f} s") from None
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def _exchange(self, method: str, target: str, data: bytes, kind: str | None, timeout: float):
        if self._https:
            return self._exchange_https(method, target, data, kind, timeout)
        conn = self._connection(timeout)
        head = [f"{method} {target} HTTP/1.1", f"Host: {self._address[0]}", f"Authorization: {self._auth}"]
        head.append(f"Content-Length: {len(data)}")
        if kind:
            head.append(f"Content-Type: {kind}")
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + data)
        return _read_response(self._local.reader, self)

    def _connection(self, timeout: float) -> socket.socket:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = socket.create_connection(self._address, timeout=timeout)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._local.conn, self._local.reader = conn, conn.makefile("rb")
        conn.settimeout(timeout)
        return conn

    def _drop(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.reader.close()
            conn.close()
        self._local.conn = self._local.reader = None

    def _exchange_https(self, method: str, target: str, data: bytes, kind: str | None, timeout: float):
        import http.client

        conn = http.client.HTTPSConnection(*self._address, timeout=timeout)
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
