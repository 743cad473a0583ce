"""The Ray backend: each worker's agent is a child process of a Ray actor (its host) on the cluster.

**Actors, not Ray Jobs.** Measured on a ``ray.cluster_utils`` cluster on this 2-core machine
(ray 2.60, ``bench --only ray-backend``): a Ray Job takes 2.7 s from submission to SUCCEEDED with
its logs (a supervisor actor, then a driver subprocess that connects to the cluster on its own)
and its state can only be polled; a new actor answers its first call in 0.1-0.3 s when Ray has an
idle worker process at hand and 1.1-1.6 s when it must start one, and an actor already up starts
an agent in milliseconds. An actor is also what can be stopped in order: it signals the agent's
process group (SIGTERM, SIGKILL after the kill grace) and then the task's group, exactly as the
local backend does, where ``stop_job`` only signals the job's driver.

**Hosts are kept.** A Ray worker process is the slow part, so a host whose worker was stopped
stays up ``idle_seconds`` (holding its resources) for the next worker of the same size and image,
which it then starts at once in a fresh folder; at most ``idle_hosts`` wait so, and one not given
a worker in time ends itself (so none is left behind by a control plane that went away). Actors
are detached: they do not share the fate of the control plane's Ray driver, and a restarted
control plane finds them by name from the handle.

**Placement.** The actor asks for the worker size's CPUs, GPUs and memory as Ray resources, plus
the backend's custom ``resources``, on a node matching its ``label_selector``; a worker image is
the ``runtime_env`` of its ``[backends.NAME.images.IMAGE]`` table (``image_uri`` where the cluster
runs containers). The nodes need taskyard installed (the agent is ``python -m taskyard.agent``).

**Lost workers.** An actor is never restarted: a node that leaves the cluster takes
it with it, the next poll says GONE, and the scheduler ends its task Task Runner Terminated and
runs it again while ``max_retries`` allows. A node drained for preemption says PREEMPTED.

**Capacity** is what the nodes that match the placement hold, looked at every ``capacity_every``
seconds on a thread of its own, so :meth:`RayBackend.capacity` never waits for the cluster.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import time
from collections.abc import Callable, Mapping
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
ROOM_WAIT = 10.0  # seconds a launch the cluster has no room for waits for a host of its shape to be let go
IDLE_MARGIN = 2.0  # seconds before an idle host ends itself when it is no longer given a worker

Host: Any = ray.remote(WorkerHost)


class RayBackend(Backend):
    name = "ray"
    default_image = BASE_IMAGE

    def __init__(self, settings: RaySettings) -> None:
        self.settings = settings
        self.namespace = settings.namespace or DEFAULT_NAMESPACE
        self.images = {BASE_IMAGE: "the Python of the cluster's nodes, with taskyard installed there",
                       **{name: image.description for name, image in settings.images.items()}}
        self._lock = threading.Condition()
        self._actors: dict[str, Any] = {}  # actor name -> its handle, once looked up
        self._shapes: dict[str, tuple] = {}  # actor name -> (image, Ray options), for hosts made here
        self._idle: dict[tuple, list[tuple[str, float]]] = {}  # shape -> hosts whose worker ended, and when
        self._workers: dict[str, str] = {}  # worker name -> its host's actor name, for workers launched here
        self._starts: dict[str, Any] = {}  # worker name -> the ref of its start, until it is known to be up
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
        """Stop watching the cluster and end the idle hosts; workers go on."""
        self._closed.set()
        if ray.is_initialized():
            self._drop_idle(lambda shape: True)

    # -- launch ----------------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> dict:
        runtime_env = self._runtime_env(request.image)
        self.connect()
        if request.worker_name in self._workers:
            raise ValueError(f"worker {request.worker_name} has already been launched")
        shape = (request.image, self._placement(request.resources))
        name, actor = self._idle_host(shape) or self._new_host(shape, runtime_env)
        self._workers[request.worker_name] = name
        self._starts[request.worker_name] = actor.start.remote(
            request.worker_name, request.control_plane_url, request.agent_token, _agent(request)
        )
        return {"actor": name, "namespace": self.namespace, "worker": request.worker_name}

    def _new_host(self, shape: tuple, runtime_env: dict) -> tuple[str, Any]:
        self._drop_idle(lambda idle: idle != shape)  # hosts of other shapes hold what this one may need
        name = f"taskyard-host-{secrets.token_hex(6)}"
        options = {"name": name, "namespace": self.namespace, "lifetime": "detached", "max_restarts": 0,
                   **json.loads(shape[1])}
        if runtime_env:
            options["runtime_env"] = runtime_env
        actor: Any = Host.options(**options).remote(self.settings.work_dir, self.settings.idle_seconds)
        self._actors[name], self._shapes[name] = actor, shape
        return name, actor

    def _idle_host(self, shape: tuple) -> tuple[str, Any] | None:
        """A host of this shape whose worker ended here lately (None if none): it starts the next agent at once.

        When the cluster has no room for a new host of the shape, waits a little for one to be let go
        here (a new actor would wait for resources anyway, and take a second to start then).
        """
        with self._lock:
            if not self._idle.get(shape) and not _room(json.loads(shape[1])):
                self._lock.wait_for(lambda: self._idle.get(shape), timeout=ROOM_WAIT)
            while self._idle.get(shape):
                name, since = self._idle[shape].pop()
                if time.monotonic() - since < self.settings.idle_seconds - IDLE_MARGIN:
                    return name, self._actors[name]
        return None

    def _drop_idle(self, which: Callable[[tuple], bool]) -> None:
        with self._lock:
            doomed = [name for shape in list(self._idle) if which(shape) for name, _ in self._idle.pop(shape)]
        for name in doomed:
            with contextlib.suppress(RayActorError, ValueError, KeyError):
                ray.kill(self._actors.pop(name), no_restart=True)

    def _runtime_env(self, image: str) -> dict:
        if image not in self.images:
            raise ValueError(f"the ray backend {self.name} has no image {image!r}; images: {', '.join(self.images)}")
        found = self.settings.images.get(image)
        return dict(found.runtime_env) if found is not None else {}

    def _placement(self, resources: Resources | None) -> str:
        """The actor's Ray options for a worker with ``resources``, as JSON (a key to hosts of one shape)."""
        placement: dict[str, Any] = {"num_cpus": resources.cpu if resources else 0,
                                     "num_gpus": len(resources.gpus) if resources else 0}
        if resources is not None and resources.memory:
            placement["memory"] = resources.memory
        if self.settings.resources:
            placement["resources"] = dict(self.settings.resources)
        if self.settings.label_selector:
            placement["label_selector"] = dict(self.settings.label_selector)
        return json.dumps(placement, sort_keys=True)

    # -- poll ------------------------------------------------------------------------------------

    def poll(self, handle: dict) -> WorkerState:
        self.connect()
        actor = self._actor(handle)
        if actor is None:
            return WorkerState.GONE
        try:
            return self._state(handle["worker"], actor)
        except RayActorError as exc:
            self._forget(handle)
            return WorkerState.PREEMPTED if getattr(exc, "preempted", False) else WorkerState.GONE

    def _state(self, worker: str, actor: Any) -> WorkerState:
        start = self._starts.get(worker)
        if start is not None:
            ready, _ = ray.wait([start], timeout=0)
            if not ready:
                return WorkerState.STARTING  # not placed yet, or its agent not started yet
            ray.get(start)  # raises if the start failed (the actor died)
            self._starts.pop(worker, None)
        try:
            alive = ray.get(actor.alive.remote(worker), timeout=CALL_TIMEOUT)
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

    def _forget(self, handle: dict) -> None:
        self._actors.pop(handle["actor"], None)
        self._shapes.pop(handle["actor"], None)
        self._starts.pop(handle["worker"], None)
        self._workers.pop(handle["worker"], None)

    def where(self, handle: dict) -> dict:
        """Where the worker runs: ``{"node_id", "pid", "dir"}`` (empty until its agent started, and once it ended)."""
        actor = self._actor(handle)
        return {} if actor is None else ray.get(actor.where.remote(handle["worker"]), timeout=CALL_TIMEOUT)

    # -- terminate -------------------------------------------------------------------------------

    def terminate(self, handle: dict) -> None:
        self.connect()
        actor = self._actor(handle)
        if actor is None:
            return
        grace = taskyard_settings.kill_grace()
        try:
            ray.get(actor.stop.remote(handle["worker"], grace), timeout=grace + STOP_SLACK)
        except (RayActorError, GetTimeoutError):
            self._kill(handle)
            return
        self._starts.pop(handle["worker"], None)
        self._workers.pop(handle["worker"], None)
        shape = self._shapes.get(handle["actor"])
        if shape is None or not self._keep(handle["actor"], shape):
            self._kill(handle)

    def _keep(self, name: str, shape: tuple) -> bool:
        """Keep a host whose worker ended, for the next worker of its shape, while there is room for it."""
        with self._lock:
            kept = sum(len(hosts) for hosts in self._idle.values())
            if kept >= self.settings.idle_hosts:
                return False
            self._idle.setdefault(shape, []).append((name, time.monotonic()))
            self._lock.notify_all()
            return True

    def _kill(self, handle: dict) -> None:
        with contextlib.suppress(RayActorError, ValueError, KeyError):
            ray.kill(self._actors[handle["actor"]], no_restart=True)
        self._forget(handle)
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


def _room(options: dict) -> bool:
    """Has the cluster, now, the resources a new host with these actor ``options`` asks for?"""
    free = ray.available_resources()
    wanted = {"CPU": options.get("num_cpus", 0), "GPU": options.get("num_gpus", 0),
              "memory": options.get("memory", 0), **options.get("resources", {})}
    return all(free.get(key, 0) >= amount for key, amount in wanted.items() if amount)


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
