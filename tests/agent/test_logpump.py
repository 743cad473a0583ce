"""The log pump's last chunks: held back for the finish report, or sent when there are too many."""

from __future__ import annotations

import os
import threading

from taskyard.agent.logpump import MAX_BATCH, LogPump


class Control:
    """Stands in for the control plane's log endpoint: stores in order, acknowledges what it stored.
    While ``gate`` is clear, a request waits (one in flight while the task ends)."""

    def __init__(self) -> None:
        self.stored: list[dict] = []
        self.gate = threading.Event()
        self.gate.set()

    def send(self, chunks: list[dict]) -> tuple[int, bool]:
        self.gate.wait(10)
        for chunk in chunks:
            if chunk["seq"] == len(self.stored) + 1:
                self.stored.append(chunk)
        return len(self.stored), False


def _all_text(control: Control, rest: list[dict]) -> str:
    chunks = control.stored + rest
    assert [c["seq"] for c in chunks] == list(range(1, len(chunks) + 1))
    return "".join(c["text"] for c in chunks)


def test_close_rest_returns_what_was_not_acknowledged_and_loses_nothing():
    control = Control()
    pump = LogPump(control.send, 0)
    read, write = os.pipe()
    pump.attach({"stdout": read})
    os.write(write, b"last words\n")
    os.close(write)
    rest = pump.close_rest()
    assert _all_text(control, rest) == "last words\n"
    assert pump.last_seq == len(control.stored) + len(rest)


def test_close_rest_waits_for_the_request_in_flight_and_sends_a_tail_too_large_for_one_report():
    control = Control()
    control.gate.clear()
    pump = LogPump(control.send, 0)
    pump.write("stdout", "first\n")  # its request waits at the gate
    pump.write("stdout", "x" * (MAX_BATCH + 10))
    threading.Timer(0.2, control.gate.set).start()
    rest = pump.close_rest()
    assert rest == []
    assert _all_text(control, rest) == "first\n" + "x" * (MAX_BATCH + 10)
