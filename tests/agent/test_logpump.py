"""The log pump's last chunks: held back for the finish report, or sent when there are too many."""

from __future__ import annotations

import os
import threading
import time

from taskyard.agent.logpump import MAX_BATCH, LogPump

from support import wait_for


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


def test_output_of_a_task_that_ends_within_the_linger_goes_only_with_its_finish():
    control = Control()
    pump = LogPump(control.send, 0, linger=5.0)
    read, write = os.pipe()
    pump.attach({"stdout": read})
    os.write(write, b"hello\n")
    os.close(write)
    rest = pump.close_rest()  # well within the linger: it ends it at once
    assert control.stored == [] and _all_text(control, rest) == "hello\n"


def test_output_is_sent_once_the_linger_is_over_and_at_once_after_it():
    control = Control()
    pump = LogPump(control.send, 0, linger=0.2)
    read, write = os.pipe()
    began = time.monotonic()
    pump.attach({"stdout": read})
    os.write(write, b"early\n")
    wait_for(pump.holds_output)  # read, and held
    wait_for(lambda: control.stored)
    assert time.monotonic() - began >= 0.2
    sent = time.monotonic()
    os.write(write, b"later\n")
    wait_for(lambda: len(control.stored) == 2)
    assert time.monotonic() - sent < 0.15 and not pump.holds_output()
    os.close(write)
    assert _all_text(control, pump.close_rest()) == "early\nlater\n"
