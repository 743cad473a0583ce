"""The Ray backend: each worker is a Ray actor on the cluster, whose child process is the agent.

**Actors, not Ray Jobs.** Measured on a two-node ``ray.cluster_utils`` cluster on this 2-core
machine (ray 2.60): a named actor asking for a custom resource is placed and answers its first
call in 1.3-1.6 s (a fresh worker process), while a Ray Job takes 3-4 s from submission to
RUNNING (a supervisor actor, then a driver subprocess, then its own connection to the cluster)
and its status can only be polled. An actor's start is a single call that ``launch`` does not
wait for; its death (killed, its node gone) is known at the next call to it; and stopping it is
ours to do in order: the actor signals the agent's process group (SIGTERM, SIGKILL after the kill
grace) and then the task's group, exactly as on the local backend, before ``ray.kill`` frees its
resources. ``stop_job`` only signals the driver and leaves process groups of its children alone.

**Placement.** The actor asks for the worker size's CPUs, GPUs and memory as Ray resources, plus
the backend's custom ``resources``, on a node matching its ``label_selector``; a worker image is
the ``runtime_env`` of its ``[backends.NAME.images.IMAGE]`` table (``image_uri`` where the cluster
runs containers). The nodes need taskyard installed (the agent is ``python -m taskyard.agent``).

**Lost workers.** An actor is detached and never restarted: a node that leaves the cluster takes
it with it, the next poll says GONE, and the scheduler ends its task Task Runner Terminated and
runs it again while ``max_retries`` allows. A node drained for preemption says PREEMPTED.

**Capacity** is what the nodes that match the placement hold, looked at every ``capacity_every``
seconds on a thread of its own, so :meth:`RayBackend.capacity` never waits for the cluster.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayActorError

from taskyard import settings as taskyard_settings
from taskyard.backends.base import Backend, LaunchRequest, Resources, WorkerState
from taskyard.backends.local import limits
from taskyard.backends.ray.host import WorkerHost
from taskyard.backends.settings import RaySettings

log = logging.getLogger("taskyard.backends.ray")

DEFAULT_NAMESPACE = "taskyard"
BASE_IMAGE = "python"
CALL_TIMEOUT = 10.0  # seconds a call to a placed worker's actor may take
STOP_SLACK = 15.0  # seconds past the kill grace for the actor to stop everything
GONE_WAIT = 10.0  # seconds ``terminate`` waits for Ray to call the actor dead

Host: Any = ray.remote(WorkerHost)


def actor_name(worker_name: str) -> str:
    return f"taskyard-{worker_name}"


class RayBackend(Backend):
    name = "ray"
    default_image = BASE_IMAGE

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        self.namespace = settings.namespace or DEFAULT_NAMESPACE
        self.images = {BASE_IMAGE: "the Python of the cluster's nodes, with taskyard installed there",
                       **{name: image.description for name, image in settings.images.items()}}
        self._lock = threading.Lock()
        self._actors: dict[str, Any] = {}  # actor name -> its handle, once looked up
        self._starts: dict[str, Any] = {}  # actor name -> the ref of its start, for workers launched here
        self._capacity: Resources | None = None
        self._closed = threading.Event()
        self._watcher: threading.Thread | None = None

    # -- the cluster -----------------------------------------------------------------------------

    def connect(self) -> None:
        """Join the cluster as a driver, once per process (Ray allows one cluster per process)."""
        with self._lock:
            if ray.is_initialized():
                return
            ray.init(address=self.settings.address, namespace=self.namespace, log_to_driver=False,
                     logging_level=logging.WARNING, configure_logging=False)

    def capacity(self) -> Resources | None:
        """The last figure the watcher read (None until it has one); the first call starts the watcher."""
        with self._lock:
            if self._watcher is None and not self._closed.is_set():
                self._watcher = threading.Thread(target=self._watch_capacity, name=f"taskyard-ray-{self.name}",
                                                 daemon=True)
                self._watcher.start()
        return self._capacity

    def _watch_capacity(self) -> None:
        while not self._closed.is_set():
            try:
                self.connect()
                self._capacity = placement_capacity(ray.nodes(), self.settings)
            except Exception as exc:  # the cluster is away: keep the last figure, say so, look again later
                log.warning("ray backend %s: could not read the cluster's resources: %s", self.name, exc)
            self._closed.wait(self.settings.capacity_every)

    def close(self) -> None:
        self._closed.set()

    # -- launch ----------------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> dict:
        runtime_env = self._runtime_env(request.image)
        self.connect()
        name = actor_name(request.worker_name)
        options = {"name": name, "namespace": self.namespace, "lifetime": "detached", "max_restarts": 0,
                   **self._placement(request.resources)}
        if runtime_env:
            options["runtime_env"] = runtime_env
        actor: Any = Host.options(**options).remote(request.worker_name, self.settings.work_dir)
        self._actors[name] = actor
        self._starts[name] = actor.start.remote(request.control_plane_url, request.agent_token, _agent(request))
        return {"actor": name, "namespace": self.namespace, "worker": request.worker_name}

    def _runtime_env(self, image: str) -> dict:
        if image not in self.images:
            raise ValueError(f"the ray backend {self.name} has no image {image!r}; images: {', '.join(self.images)}")
        found = self.settings.images.get(image)
        return dict(found.runtime_env) if found is not None else {}

    def _placement(self, resources: Resources | None) -> dict:
        placement: dict[str, Any] = {"num_cpus": resources.cpu if resources else 0,
                                     "num_gpus": len(resources.gpus) if resources else 0}
        if resources is not None and resources.memory:
            placement["memory"] = resources.memory
        if self.settings.resources:
            placement["resources"] = dict(self.settings.resources)
        if self.settings.label_selector:
            placement["label_selector"] = dict(self.settings.label_selector)
        return placement

    # -- poll ------------------------------------------------------------------------------------

    def poll(self, handle: dict) -> WorkerState:
        self.connect()
        actor = self._actor(handle)
        if actor is None:
            return WorkerState.GONE
        try:
            return self._state(handle["actor"], actor)
        except RayActorError as exc:
            self._forget(handle["actor"])
            return WorkerState.PREEMPTED if getattr(exc, "preempted", False) else WorkerState.GONE

    def _state(self, name: str, actor: Any) -> WorkerState:
        start = self._starts.get(name)
        if start is not None:
            ready, _ = ray.wait([start], timeout=0)
            if not ready:
                return WorkerState.STARTING  # not placed yet, or its agent not started yet
            ray.get(start)  # raises if the start failed (the actor died)
            self._starts.pop(name, None)
        try:
            alive = ray.get(actor.alive.remote(), timeout=CALL_TIMEOUT)
        except GetTimeoutError:
            return WorkerState.STARTING if start is None else WorkerState.RUNNING
        return WorkerState.RUNNING if alive else WorkerState.GONE

    def _actor(self, handle: dict) -> Any | None:
        name = handle["actor"]
        if name not in self._actors:
            try:
                self._actors[name] = ray.get_actor(name, namespace=handle["namespace"])
            except ValueError:  # no such actor, or a dead one
                return None
        return self._actors[name]

    def _forget(self, name: str) -> None:
        self._actors.pop(name, None)
        self._starts.pop(name, None)

    def where(self, handle: dict) -> dict:
        """Where the worker runs: ``{"node_id", "pid", "dir"}`` (empty until its agent started)."""
        actor = self._actor(handle)
        return {} if actor is None else ray.get(actor.where.remote(), timeout=CALL_TIMEOUT)

    # -- terminate -------------------------------------------------------------------------------

    def terminate(self, handle: dict) -> None:
        self.connect()
        actor = self._actor(handle)
        if actor is None:
            return
        grace = taskyard_settings.kill_grace()
        with contextlib.suppress(RayActorError, GetTimeoutError):
            ray.get(actor.stop.remote(grace), timeout=grace + STOP_SLACK)
        with contextlib.suppress(RayActorError, ValueError):
            ray.kill(actor, no_restart=True)
        self._forget(handle["actor"])
        self._wait_dead(handle)

    def _wait_dead(self, handle: dict) -> None:
        deadline = time.monotonic() + GONE_WAIT
        while time.monotonic() < deadline:
            try:
                ray.get_actor(handle["actor"], namespace=handle["namespace"])
            except ValueError:
                return
            time.sleep(0.05)
        log.warning("ray backend %s: actor %s still listed %g s after it was killed", self.name, handle["actor"],
                    GONE_WAIT)


def _agent(request: LaunchRequest) -> dict:
    """The agent's worker settings (``TASKYARD_AGENT_WORKER``): its size, and its tasks' memory limit."""
    resources = request.resources
    if resources is None:
        return {"size": request.size, "memory": None, "limits": limits.Limits("none").to_json()}
    rlimits = limits.rlimits_for(resources, own_user=False)
    return {"size": request.size, "memory": resources.memory, "limits": rlimits.to_json()}


def placement_capacity(nodes: list[Mapping[str, Any]], settings: RaySettings) -> Resources | None:
    """What the live nodes that a worker of ``settings`` may run on hold in all; None when there are none."""
    fit = [node for node in nodes if node.get("Alive") and _matches(node, settings)]
    if not fit:
        return None
    cpu = sum(float(node["Resources"].get("CPU", 0)) for node in fit)
    memory = sum(int(node["Resources"].get("memory", 0)) for node in fit)
    gpus = sum(int(node["Resources"].get("GPU", 0)) for node in fit)
    return Resources(cpu=cpu, memory=memory, gpus=tuple(str(device) for device in range(gpus)))


def _matches(node: Mapping[str, Any], settings: RaySettings) -> bool:
    resources, labels = node.get("Resources") or {}, node.get("Labels") or {}
    return all(resources.get(key, 0) >= amount for key, amount in settings.resources.items()) and all(
        labels.get(key) == value for key, value in settings.label_selector.items()
    )
