"""The flow driver's wake-ups: a task's end wakes it only while runs go; a run submitted or killed always."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from taskyard.server.flows import driver as flow_driver
from taskyard.server.flows.driver import FlowDriver
from taskyard.server.notifier import FLOWS, NEW_FLOWS, Notifier

from support import wait_for


class CountedDriver(FlowDriver):
    """A driver whose passes are counted and find runs going or not, as the test says."""

    def __init__(self, notifier: Notifier) -> None:
        super().__init__(None, notifier, None, None)  # type: ignore[arg-type]  # its passes touch no store
        self.passes, self.going = 0, False
        self.passed = threading.Event()

    def tick(self) -> bool:
        self.passes += 1
        self.passed.set()
        return self.going


def _after(driver: CountedDriver, wake: str) -> int:
    """Passes made once ``wake`` is notified and the driver has had time to act on it."""
    before = driver.passes
    driver.passed.clear()
    driver.notifier.notify(wake)
    driver.passed.wait(0.5)
    return driver.passes - before


@pytest.fixture
def started(monkeypatch) -> Iterator[Callable[[bool], CountedDriver]]:
    """``started(going)``: a driver started, past its first pass, whose passes find runs going or not."""
    monkeypatch.setattr(flow_driver, "LOOK_EVERY", 60.0)  # no pass but those woken
    made: list[CountedDriver] = []

    def start(going: bool) -> CountedDriver:
        made.append(CountedDriver(Notifier()))
        made[-1].going = going
        made[-1].start()
        wait_for(lambda: made[-1].passes == 1, timeout=5)
        return made[-1]

    yield start
    for driver in made:
        driver.stop()


def test_with_no_run_going_a_tasks_end_does_not_wake_it_and_a_new_run_does(started):
    driver = started(False)
    assert _after(driver, FLOWS) == 0
    assert _after(driver, NEW_FLOWS) == 1


def test_while_runs_go_a_tasks_end_wakes_it(started):
    driver = started(True)
    assert _after(driver, FLOWS) == 1
    assert _after(driver, FLOWS) == 1
