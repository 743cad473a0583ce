"""Reads a task's stdout and stderr and ships them as numbered chunks, in order, losing nothing.

Reader threads take whatever each pipe has (no waiting for whole lines); one sender thread ships
what has gathered as soon as the previous request is answered, so a quiet task gets each line
at once and a loud one gets large batches (but for a task's first moments, its linger: the output
of a task that ends by then goes with its finish report). Chunks stay in memory until the control plane
acknowledges them, and are sent again after a failure. With a :class:`~.masking.Masker`, the
secret values a task was given are masked before its text leaves the reader.
"""

from __future__ import annotations

import codecs
import os
import threading
import time

from .masking import Masker

MAX_CHUNK = 256 * 1024
MAX_BATCH = 2 * 1024 * 1024
READ_SIZE = 64 * 1024


class LogPump:
    def __init__(self, send, first_seq: int, masker: Masker | None = None, linger: float = 0.0) -> None:
        """``linger``: seconds from :meth:`attach` during which nothing is sent, so that a task that ends
        by then has its output sent with its finish report (:meth:`close_rest`): one call less."""
        self._send = send  # send(list_of_chunks) -> (acked_seq, kill)
        self._masker = masker
        self._linger = linger
        self._linger_until = 0.0  # monotonic; set by attach
        self._seq = first_seq
        self._acked = first_seq
        self._pending: list[tuple[str, float, str]] = []
        self._unacked: list[dict] = []
        self._cond = threading.Condition()
        self._readers: list[threading.Thread] = []
        self._closing = False
        self._holding = False  # the sender starts no new batch: close_rest takes what is left
        self._in_flight = False
        self._shipped = first_seq  # chunks up to here were sent once: never grow them again
        self._sender = threading.Thread(target=self._send_loop, name="log-sender", daemon=True)
        self.on_kill = lambda: None

    def attach(self, pipes: dict[str, int]) -> None:
        """Read these pipes (stream name -> fd, closed when done) until they close."""
        self._linger_until = time.monotonic() + self._linger
        for stream, fd in pipes.items():
            reader = threading.Thread(target=self._read, args=(stream, fd), name=f"log-{stream}", daemon=True)
            reader.start()
            self._readers.append(reader)
        self._start_sender()

    def write(self, stream: str, text: str) -> None:
        """Ship ``text`` as output of ``stream`` (``"system"``: the agent's own lines; output the agent
        read itself), after what came before; masked like what is read from the pipes."""
        self._put(stream, text if self._masker is None else self._masker.mask(text))
        self._start_sender()

    def _start_sender(self) -> None:
        if not self._sender.is_alive() and not self._closing:
            self._sender.start()


    def drain(self, timeout: float = 5.0) -> None:
        """Wait until the pipes attached so far have closed (at most ``timeout``)."""
        deadline = time.monotonic() + timeout
        for reader in self._readers:
            reader.join(max(0.0, deadline - time.monotonic()))

    def _read(self, stream: str, fd: int) -> None:
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        masker = self._masker.stream() if self._masker is not None else None
        try:
            while True:
                data = os.read(fd, READ_SIZE)
                if not data:
                    break
                text = decoder.decode(data)
                self._put(stream, text if masker is None else masker.feed(text))
        except OSError:
            pass
        finally:
            tail = decoder.decode(b"", final=True)
            if masker is not None:
                tail = masker.feed(tail) + masker.finish()
            if tail:
                self._put(stream, tail)
            os.close(fd)

    def _put(self, stream: str, text: str) -> None:
        if not text:
            return
        with self._cond:
            self._pending.append((stream, time.time(), text))
            self._cond.notify_all()

    def _send_loop(self) -> None:
        while True:
            with self._cond:
                while not self._closing and (self._holding or (not self._pending and not self._unacked)):
                    self._cond.wait()
                if self._holding:
                    return  # closed by close_rest, which takes what is left
                if self._lingering():
                    continue
                self._number_pending()
                batch = self._batch()
                if not batch and self._closing:
                    return
                self._in_flight = bool(batch)
            if batch:
                try:
                    self._ship(batch)
                finally:
                    with self._cond:
                        self._in_flight = False
                        self._cond.notify_all()

    def _lingering(self) -> bool:
        """Wait out the linger (woken early by close_rest or close); True if it was not over. Holds ``_cond``."""
        left = self._linger_until - time.monotonic()
        if left <= 0 or self._closing:
            return False
        self._cond.wait(left)
        return True

    def _number_pending(self) -> None:
        for stream, ts, text in self._pending:
            last = self._unacked[-1] if self._unacked else None
            if (
                last is not None
                and last["seq"] > self._shipped
                and last["stream"] == stream
                and len(last["text"]) + len(text) <= MAX_CHUNK
            ):
                last["text"] += text
                continue
            self._seq += 1
            self._unacked.append({"seq": self._seq, "stream": stream, "ts": ts, "text": text})
        self._pending.clear()

    def _batch(self) -> list[dict]:
        batch: list[dict] = []
        size = 0
        for chunk in self._unacked:
            if batch and size + len(chunk["text"]) > MAX_BATCH:
                break
            batch.append(chunk)
            size += len(chunk["text"])
        if batch:
            self._shipped = max(self._shipped, batch[-1]["seq"])
        return batch

    def _ship(self, batch: list[dict]) -> None:
        acked, kill = self._send(batch)
        with self._cond:
            progress = acked > self._acked
            self._acked = max(self._acked, acked)
            self._unacked = [c for c in self._unacked if c["seq"] > self._acked]
        if not progress:
            time.sleep(0.1)  # the control plane wants an earlier chunk first; resend after a pause
        if kill:
            self.on_kill()

    def close(self, timeout: float = 5.0) -> None:
        """Wait for the pipes to close (at most ``timeout``) and for every chunk to be acknowledged."""
        if not self._sender.is_alive() and not self._pending:
            return  # never started: nothing was captured
        self.drain(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._sender.join()

    def close_rest(self, timeout: float = 5.0) -> list[dict]:
        """Like :meth:`close`, but return the chunks not yet acknowledged (at most ``MAX_BATCH`` of text)
        instead of sending them, for the caller to send with its last report: one round trip less.
        When more than that is left, it is sent first, as :meth:`close` does, and nothing is returned."""
        with self._cond:
            self._holding = True
        self.drain(timeout)
        with self._cond:
            while self._in_flight:
                self._cond.wait()
            self._number_pending()
            rest = [dict(chunk) for chunk in self._unacked]
            if sum(len(chunk["text"]) for chunk in rest) > MAX_BATCH:
                self._holding, rest = False, []
            self._closing = True
            self._cond.notify_all()
        if self._sender.is_alive():
            self._sender.join()
        return rest

    def holds_output(self) -> bool:
        """Has it output not yet acknowledged (its next send is on the way)?"""
        with self._cond:
            return bool(self._pending or self._unacked)

    @property
    def last_seq(self) -> int:
        return self._seq
