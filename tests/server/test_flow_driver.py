"""The flow driver's wake-ups: a task's end wakes it only while runs go; a run submitted or killed always."""

from __future__ import annotations

import threading

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


def _started(monkeypatch, going: bool) -> CountedDriver:
    monkeypatch.setattr(flow_driver, "LOOK_EVERY", 60.0)  # no pass but those woken
    made = CountedDriver(Notifier())
    made.going = going
    made.start()
    wait_for(lambda: made.passes == 1, timeout=5)
    return made


def test_with_no_run_going_a_tasks_end_does_not_wake_it_and_a_new_run_does(monkeypatch):
    driver = _started(monkeypatch, going=False)
    try:
        assert _after(driver, FLOWS) == 0
        assert _after(driver, NEW_FLOWS) == 1
    finally:
        driver.stop()


def test_while_runs_go_a_tasks_end_wakes_it(monkeypatch):
    driver = _started(monkeypatch, going=True)
    try:
        assert _after(driver, FLOWS) == 1
        assert _after(driver, FLOWS) == 1
    finally:
        driver.stop()
