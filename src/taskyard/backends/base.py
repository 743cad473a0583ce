"""The contract every backend keeps. A backend only decides *where* a worker's agent starts.

The control plane calls these methods from its scheduler thread, never inside a database
transaction. A backend keeps no state that the control plane needs after a restart: everything it
needs to find a worker again is in the handle that :meth:`Backend.launch` returns.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum


@dataclass(frozen=True)
class Resources:
    """What a worker may use, or what a host or cluster holds; each backend maps it onto its own limits."""

    cpu: float  # cores, may be fractional
    memory: int  # bytes
    gpus: tuple[str, ...] = ()  # device ids, as the host names them (``nvidia-smi -L``'s index)


@dataclass(frozen=True)
class LaunchRequest:
    worker_name: str
    agent_token: str
    # Where the agent calls: one URL, or every live server's (comma-separated, PostgreSQL peers), passed on
    # unchanged in TASKYARD_AGENT_URL
    control_plane_url: str
    size: str
    image: str
    resources: Resources | None = None  # None: no limits (tests of the protocol alone)


class WorkerState(str, Enum):
    STARTING = "starting"
    RUNNING = "running"
    GONE = "gone"
    PREEMPTED = "preempted"  # the provider took the machine back (spot / preemptible capacity)


@dataclass(frozen=True)
class Provisioning:
    """What a backend says of a worker it has started whose agent has not called in yet."""

    state: WorkerState  # as :meth:`Backend.poll` tells it
    message: str | None = None  # why it is not up yet, in the provider's words; None: nothing to tell


class Backend(ABC):
    """Starts and stops workers; each worker runs one agent, which reports to the control plane."""

    name: str
    #: worker images this backend can start, each with a one-line description
    images: Mapping[str, str]
    default_image: str

    @abstractmethod
    def launch(self, request: LaunchRequest) -> dict:
        """Start a worker whose agent will call ``request.control_plane_url`` with ``request.agent_token``.

        Blocks only until the start has been *requested*: the agent reports itself when it is up,
        and until then the worker is "not yet" running, which is not an error. Returns a JSON-able
        handle for :meth:`poll` and :meth:`terminate`. Not idempotent: call it once per worker
        name. Raises on a start that cannot happen (no capacity, bad image); nothing is left
        behind when it raises. The worker must outlive the control plane that started it: another
        server of the same database polls and terminates it by its handle.
        """

    @abstractmethod
    def poll(self, handle: dict) -> WorkerState:
        """Tell whether the worker still exists. Never raises for a worker that is gone: returns GONE.

        A backend whose provider can take machines back reports such a worker as PREEMPTED.
        Cheap enough to be called for every live worker about once a second.
        """

    @abstractmethod
    def terminate(self, handle: dict) -> None:
        """Stop the worker and every process it started, and free what it holds.

        Asks politely first (the agent stops its task with SIGTERM, then SIGKILL after the kill
        grace) and forcibly after that. Blocks until the worker is gone. Idempotent: terminating a
        worker that is already gone returns silently.
        """

    def capacity(self) -> Resources | None:
        """What this backend's workers may use in all, at most; None when it has no known bound.

        Cheap (cached where finding it out is not). A size bigger than this is refused at submit.
        """
        return None

    def python_venvs(self) -> Mapping[str, str] | None:
        """The named Python virtual environments a task may ask for (``python_venv_name``): name -> folder.

        Optional. A name not in it is refused at submit, listing these. None (the default): this
        backend cannot tell, names are not checked at submit, and a task whose environment its
        worker does not have ends Runtime Error. Cheap: called at each submission that names one.
        """
        return None

    def collect_garbage(self, live: Callable[[], set[str]]) -> list[str]:
        """Remove what this backend holds for workers that are not live; the workers' names, or their objects'.

        Optional (the default holds nothing to collect). ``live`` gives the names of the workers the
        control plane still has; call it *after* listing what the backend holds, so that a worker
        started in between is never taken for garbage. Called now and then, off the scheduler's thread.
        """
        return []

    def close(self) -> None:  # noqa: B027  (most backends hold nothing between calls)
        """Let go of what this backend object holds between calls. Workers are not stopped: they go on."""


class BackendWithProvisioning(Backend):
    """A backend that tells why a worker it started is not up yet, and how long one may take.

    Optional, found with ``isinstance``. The control plane polls each of this backend's workers in
    Provisioning (launched, their agent not yet called in) with :meth:`provisioning` about once a
    second, and shows the message on the worker and as the status message of its task while it
    waits. A worker whose agent has not called in :attr:`provisioning_timeout` seconds after its
    launch is given up (terminated), and its task is queued again, or ends, with the last message
    as the reason; without this mixin, the server's ``TASKYARD_PROVISION_TIMEOUT`` is that limit.
    """

    #: seconds a worker of this backend may take from its launch until its agent calls in
    provisioning_timeout: float

    @abstractmethod
    def provisioning(self, handle: dict) -> Provisioning:
        """The worker's state and why it is not running yet. Never raises for a worker that is gone.

        As cheap as :meth:`Backend.poll`. It does not give the worker up itself, however long it
        waits: the control plane does, at :attr:`provisioning_timeout`, by :meth:`Backend.terminate`.
        """
