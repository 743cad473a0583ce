"""A backend's lane: its calls run on threads of their own, are given up past the timeout, and tell what is wrong."""

from __future__ import annotations

import threading
import time

from taskyard.server import lanes
from taskyard.server.lanes import Lane

from support import wait_for


class Idle:
    """A backend that is only closed (the calls under test are plain functions)."""

    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_call_past_the_timeout_is_given_up_once_and_stalls_the_lane_until_it_returns():
    lane = Lane("slow", Idle(), timeout=0.2, threads=2)  # type: ignore[arg-type]
    release, timed_out, done = threading.Event(), [], threading.Event()
    lane.submit("start of worker w-1", lambda: (release.wait(30), done.set()), on_timeout=lambda: timed_out.append(1))
    assert lane.pending("start of worker w-1") and not lane.stalled()
    wait_for(lambda: lane.check() or timed_out, timeout=5)
    lane.check()
    assert timed_out == [1]  # once
    assert lane.stalled()
    assert lane.fault() == "not answering: the start of worker w-1 has not returned in 0.2 s"
    ran = threading.Event()
    lane.submit("poll", ran.set)  # another thread of the lane still serves
    assert ran.wait(5)
    release.set()
    assert done.wait(5)
    wait_for(lambda: not lane.stalled(), timeout=5)
    assert lane.fault() is None


def test_a_failure_is_the_backends_fault_until_a_call_succeeds_and_a_raising_call_leaves_the_lane_serving():
    lane = Lane("flaky", Idle(), timeout=5)  # type: ignore[arg-type]
    lane.failed("poll", RuntimeError("connection refused"))
    assert lane.fault() == "poll failed: connection refused" and not lane.stalled()
    lane.answered()
    assert lane.fault() is None
    lane.submit("broken", lambda: 1 / 0)
    ran = threading.Event()
    lane.submit("next", ran.set)
    assert ran.wait(5)


def test_close_waits_for_the_calls_under_way_then_closes_the_backend():
    backend = Idle()
    lane = Lane("local", backend, timeout=5)  # type: ignore[arg-type]
    finished = []
    lane.submit("stop of worker w-1", lambda: (threading.Event().wait(0.3), finished.append(1)))
    lane.close()
    assert finished == [1] and backend.closed


def test_a_start_goes_ahead_of_the_calls_waiting_before_it():
    lane = Lane("busy", Idle(), timeout=5, threads=1)  # type: ignore[arg-type]
    release, order = threading.Event(), []
    lane.submit("stop of worker w-1", lambda: release.wait(5))  # holds the only thread
    wait_for(lambda: _running(lane))
    lane.submit("stop of worker w-2", lambda: order.append("stop"))
    lane.submit("start of worker w-3", lambda: order.append("start"), first=True)
    release.set()
    wait_for(lambda: len(order) == 2)
    assert order == ["start", "stop"]
    lane.close()


def test_a_start_does_not_go_ahead_of_a_call_that_has_waited_longer_than_its_head_start(monkeypatch):
    """Else under a steady stream of starts the stops wait for ever, and the workers they free pile up."""
    monkeypatch.setattr(lanes, "HEAD_START", 0.05)
    lane = Lane("busy", Idle(), timeout=5, threads=1)  # type: ignore[arg-type]
    release, order = threading.Event(), []
    lane.submit("stop of worker w-1", lambda: release.wait(5))  # holds the only thread
    wait_for(lambda: _running(lane))
    lane.submit("stop of worker w-2", lambda: order.append("stop"))
    time.sleep(0.1)
    lane.submit("start of worker w-3", lambda: order.append("start"), first=True)
    release.set()
    wait_for(lambda: len(order) == 2)
    assert order == ["stop", "start"]
    lane.close()


def _running(lane: Lane) -> bool:
    return any(call.started for call in lane._calls.values())
