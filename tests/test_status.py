"""Task statuses: their display names, parsing, the helpers, and the shape of the lifecycle table."""

from __future__ import annotations

import pytest

from taskyard.errors import Conflict, IllegalTransition
from taskyard.status import ALLOWED, TaskStatus, WorkerStatus, check_transition

S = TaskStatus

# The names of the lifecycle table, in its order.
LIFECYCLE_NAMES = [
    "Waiting for Input",
    "In Queue",
    "Preparing to Compute",
    "In Progress",
    "Finalizing",
    "Success",
    "Failed",
    "Pending Kill",
    "Killed",
    "Machine Terminated in Queue",
    "Spot Reclaimed",
    "Task Runner Terminated",
    "Machine Terminated by User",
    "Machine Time Limit Reached",
    "Runtime Error",
    "Task Timed Out",
]

TERMINAL = {
    S.SUCCESS,
    S.FAILED,
    S.KILLED,
    S.MACHINE_TERMINATED_IN_QUEUE,
    S.SPOT_RECLAIMED,
    S.TASK_RUNNER_TERMINATED,
    S.MACHINE_TERMINATED_BY_USER,
    S.MACHINE_TIME_LIMIT_REACHED,
    S.RUNTIME_ERROR,
    S.TASK_TIMED_OUT,
}


def test_every_status_has_the_lifecycle_tables_name():
    assert [status.alias for status in TaskStatus] == LIFECYCLE_NAMES
    assert [str(status) for status in TaskStatus] == LIFECYCLE_NAMES


@pytest.mark.parametrize("status", list(TaskStatus), ids=lambda s: s.value)
def test_from_alias_accepts_code_and_name_in_any_case(status):
    for text in (
        status.value,
        status.value.upper(),
        status.alias,
        status.alias.lower(),
        status.alias.upper(),
        f"  {status.alias.swapcase()} ",
    ):
        assert TaskStatus.from_alias(text) is status


@pytest.mark.parametrize("text", ["", "queued", "in-queue", "success!"])
def test_from_alias_refuses_anything_else(text):
    with pytest.raises(ValueError, match="unknown task status"):
        TaskStatus.from_alias(text)


def test_terminal_statuses():
    assert {s for s in TaskStatus if s.is_terminal()} == TERMINAL
    assert TaskStatus.terminal_statuses() == TERMINAL


def test_running_statuses():
    assert {s for s in TaskStatus if s.is_running()} == {S.PREPARING, S.IN_PROGRESS, S.FINALIZING}
    assert not any(s.is_terminal() for s in TaskStatus if s.is_running())


def test_failed_means_ended_without_success():
    assert {s for s in TaskStatus if s.is_failed()} == TERMINAL - {S.SUCCESS}
    assert not S.PENDING_KILL.is_failed()
    assert not S.IN_QUEUE.is_failed()


def _reachable(start: TaskStatus) -> set[TaskStatus]:
    seen, todo = {start}, [start]
    while todo:
        for nxt in ALLOWED.get(todo.pop(), frozenset()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


@pytest.mark.parametrize("status", [s for s in TaskStatus if not s.is_terminal()], ids=lambda s: s.value)
def test_every_unfinished_status_can_end(status):
    assert _reachable(status) & TERMINAL, f"{status.alias} can never end"


def test_every_status_can_happen():
    assert _reachable(S.WAITING_FOR_INPUT) == set(TaskStatus)


def test_an_ended_task_can_only_be_queued_again():
    for status in TERMINAL:
        assert ALLOWED.get(status, frozenset()) <= {S.IN_QUEUE}, status.alias
    assert not ALLOWED.get(S.SUCCESS)
    assert not ALLOWED.get(S.FAILED)
    assert not ALLOWED.get(S.KILLED)


def test_no_status_moves_to_itself():
    for status, targets in ALLOWED.items():
        assert status not in targets, status.alias


def test_check_transition_refuses_what_is_not_in_the_table():
    check_transition(S.IN_QUEUE, S.PREPARING)
    with pytest.raises(IllegalTransition, match="from Success to In Progress") as caught:
        check_transition(S.SUCCESS, S.IN_PROGRESS)
    assert isinstance(caught.value, Conflict)
    with pytest.raises(IllegalTransition):
        check_transition(S.IN_QUEUE, S.SUCCESS)


def test_worker_statuses():
    assert {s for s in WorkerStatus if s.is_finished()} == {WorkerStatus.TERMINATED, WorkerStatus.FAILED}
    assert [s.alias for s in WorkerStatus] == ["Provisioning", "Running", "Terminating", "Terminated", "Failed"]
