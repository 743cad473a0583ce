"""Waiting for a task's process: told when it ends, without reaping it (its runner reaps it)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from taskyard.agent import tree


def _sleeper(seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


@pytest.fixture(params=["pidfd", "polling"])
def way(request, monkeypatch) -> str:
    if request.param == "polling":
        monkeypatch.delattr(os, "pidfd_open", raising=False)
    elif not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfd on this OS")
    return request.param


def test_a_process_that_ends_in_time_is_told_and_left_for_its_runner_to_reap(way) -> None:
    process = _sleeper(0.1)
    assert tree.ends_within(process, 30)
    assert process.wait(timeout=5) == 0  # the exit code is still there to be had


def test_a_process_that_outlives_the_wait_is_not_told_and_runs_on(way) -> None:
    process = _sleeper(30)
    try:
        assert not tree.ends_within(process, 0.2)
        assert process.poll() is None
    finally:
        process.kill()
        process.wait()
