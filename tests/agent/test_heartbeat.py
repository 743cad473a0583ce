"""The agent's first heartbeat waits FIRST_HEARTBEAT: a worker done by then (one quick task) sends none."""

from __future__ import annotations

import threading
import time

from taskyard.agent import main
from taskyard.agent.main import Agent

from support import wait_for


class Recorder:
    """A control plane's side of the calls, recorded; each heartbeat is answered after a short hold."""

    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []

    def call(self, method: str, path: str, body=None, **_options) -> dict:
        self.calls.append((time.monotonic(), path))
        time.sleep(0.05)
        return {}

    def learn(self, urls) -> None:
        pass


def _beating(tmp_path) -> tuple[Agent, Recorder, threading.Thread, float]:
    recorder = Recorder()
    agent = Agent(recorder, tmp_path)  # type: ignore[arg-type]
    began = time.monotonic()
    thread = threading.Thread(target=agent.heartbeat, daemon=True)
    thread.start()
    return agent, recorder, thread, began


def test_a_worker_done_before_its_first_heartbeat_sends_none(tmp_path):
    agent, recorder, thread, _ = _beating(tmp_path)
    time.sleep(main.FIRST_HEARTBEAT / 4)
    agent.stop()
    thread.join(timeout=5)
    assert not thread.is_alive() and recorder.calls == []


def test_a_worker_still_at_work_heartbeats_from_then_on(tmp_path):
    agent, recorder, thread, began = _beating(tmp_path)
    wait_for(lambda: len(recorder.calls) >= 2, timeout=5)
    agent.stop()
    thread.join(timeout=5)
    first = recorder.calls[0][0] - began
    assert main.FIRST_HEARTBEAT <= first < main.FIRST_HEARTBEAT + 0.5
    assert {path for _, path in recorder.calls} == {f"/heartbeat?wait={main.HEARTBEAT_WAIT}"}
