"""Task and worker statuses, their display names, and the one table of allowed transitions.

The states and display names are those of the task lifecycle table: ``TaskStatus.IN_QUEUE.alias``
is ``"In Queue"``. Every change of a task's status goes through :func:`check_transition`.
"""

from __future__ import annotations

from enum import Enum

from taskyard.errors import IllegalTransition


class TaskStatus(str, Enum):
    WAITING_FOR_INPUT = "waiting_for_input"
    IN_QUEUE = "in_queue"
    PREPARING = "preparing"
    IN_PROGRESS = "in_progress"
    FINALIZING = "finalizing"
    SUCCESS = "success"
    FAILED = "failed"
    PENDING_KILL = "pending_kill"
    KILLED = "killed"
    MACHINE_TERMINATED_IN_QUEUE = "machine_terminated_in_queue"
    SPOT_RECLAIMED = "spot_reclaimed"
    TASK_RUNNER_TERMINATED = "task_runner_terminated"
    MACHINE_TERMINATED_BY_USER = "machine_terminated_by_user"
    MACHINE_TIME_LIMIT_REACHED = "machine_time_limit_reached"
    RUNTIME_ERROR = "runtime_error"
    TASK_TIMED_OUT = "task_timed_out"

    @property
    def alias(self) -> str:
        return _ALIASES[self]

    def is_terminal(self) -> bool:
        return self in _TERMINAL

    def is_running(self) -> bool:
        return self in _RUNNING

    def is_failed(self) -> bool:
        return self.is_terminal() and self is not TaskStatus.SUCCESS

    @classmethod
    def terminal_statuses(cls) -> frozenset[TaskStatus]:
        return _TERMINAL

    @classmethod
    def from_alias(cls, text: str) -> TaskStatus:
        """Accept a code (``in_queue``) or a display name (``In Queue``), in any case."""
        wanted = text.strip().lower()
        for status in cls:
            if wanted in (status.value, status.alias.lower()):
                return status
        raise ValueError(f"unknown task status {text!r}")

    def __str__(self) -> str:
        return self.alias


_ALIASES = {
    TaskStatus.WAITING_FOR_INPUT: "Waiting for Input",
    TaskStatus.IN_QUEUE: "In Queue",
    TaskStatus.PREPARING: "Preparing to Compute",
    TaskStatus.IN_PROGRESS: "In Progress",
    TaskStatus.FINALIZING: "Finalizing",
    TaskStatus.SUCCESS: "Success",
    TaskStatus.FAILED: "Failed",
    TaskStatus.PENDING_KILL: "Pending Kill",
    TaskStatus.KILLED: "Killed",
    TaskStatus.MACHINE_TERMINATED_IN_QUEUE: "Machine Terminated in Queue",
    TaskStatus.SPOT_RECLAIMED: "Spot Reclaimed",
    TaskStatus.TASK_RUNNER_TERMINATED: "Task Runner Terminated",
    TaskStatus.MACHINE_TERMINATED_BY_USER: "Machine Terminated by User",
    TaskStatus.MACHINE_TIME_LIMIT_REACHED: "Machine Time Limit Reached",
    TaskStatus.RUNTIME_ERROR: "Runtime Error",
    TaskStatus.TASK_TIMED_OUT: "Task Timed Out",
}

_RUNNING = frozenset({TaskStatus.PREPARING, TaskStatus.IN_PROGRESS, TaskStatus.FINALIZING})

_TERMINAL = frozenset(
    {
        TaskStatus.SUCCESS,
        TaskStatus.FAILED,
        TaskStatus.KILLED,
        TaskStatus.MACHINE_TERMINATED_IN_QUEUE,
        TaskStatus.SPOT_RECLAIMED,
        TaskStatus.TASK_RUNNER_TERMINATED,
        TaskStatus.MACHINE_TERMINATED_BY_USER,
        TaskStatus.MACHINE_TIME_LIMIT_REACHED,
        TaskStatus.RUNTIME_ERROR,
        TaskStatus.TASK_TIMED_OUT,
    }
)

# Where a task can go while a machine holds it (or is about to): any ending but its own verdict, or a kill.
_LOST_ON_A_MACHINE = (_TERMINAL - {TaskStatus.SUCCESS, TaskStatus.FAILED, TaskStatus.MACHINE_TERMINATED_IN_QUEUE}) | {
    TaskStatus.PENDING_KILL
}

S = TaskStatus
ALLOWED: dict[TaskStatus, frozenset[TaskStatus]] = {
    S.WAITING_FOR_INPUT: frozenset({S.IN_QUEUE, S.KILLED, S.RUNTIME_ERROR}),
    S.IN_QUEUE: frozenset({S.PREPARING, S.KILLED, S.MACHINE_TERMINATED_IN_QUEUE, S.RUNTIME_ERROR}),
    S.PREPARING: _LOST_ON_A_MACHINE | {S.IN_PROGRESS, S.IN_QUEUE},
    S.IN_PROGRESS: _LOST_ON_A_MACHINE | {S.FINALIZING, S.IN_QUEUE},
    S.FINALIZING: _LOST_ON_A_MACHINE | {S.SUCCESS, S.FAILED},
    S.PENDING_KILL: frozenset({S.KILLED}) | (_LOST_ON_A_MACHINE - {S.PENDING_KILL}),
    # Lost workers and reclaimed machines go back to the queue when the task asks for retries.
    S.SPOT_RECLAIMED: frozenset({S.IN_QUEUE}),
    S.TASK_RUNNER_TERMINATED: frozenset({S.IN_QUEUE}),
}
del S


#: the stored values of the statuses a task can still leave (for queries)
ACTIVE_VALUES = tuple(status.value for status in TaskStatus if not status.is_terminal())


def check_transition(current: TaskStatus, new: TaskStatus) -> None:
    """Raise :class:`IllegalTransition` unless ``current -> new`` is in the lifecycle table."""
    if new not in ALLOWED.get(current, frozenset()):
        raise IllegalTransition(f"a task cannot go from {current.alias} to {new.alias}")


class WorkerStatus(str, Enum):
    PROVISIONING = "Provisioning"
    RUNNING = "Running"
    TERMINATING = "Terminating"
    TERMINATED = "Terminated"
    FAILED = "Failed"

    def is_finished(self) -> bool:
        return self in (WorkerStatus.TERMINATED, WorkerStatus.FAILED)

    @property
    def alias(self) -> str:
        return self.value

    def __str__(self) -> str:
        return self.value
