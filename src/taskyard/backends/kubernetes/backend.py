"""Workers as Kubernetes pods, through the official client (``pip install 'taskyard[kubernetes]'``)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from taskyard import settings as taskyard_settings
from taskyard.backends.base import BackendWithProvisioning, LaunchRequest, Provisioning, WorkerState
from taskyard.backends.kubernetes import manifests
from taskyard.backends.settings import KubernetesSettings

# Why a pod ended that means its node was taken away, not that its worker failed.
RECLAIMED_REASONS = frozenset({"Evicted", "Preempting", "NodeLost", "NodeShutdown", "Terminated"})
# Why a container of a scheduled pod waits that is only its start under way, nothing to tell.
STARTING_REASONS = frozenset({"ContainerCreating", "PodInitializing"})


class KubernetesBackend(BackendWithProvisioning):
    """Each worker a pod; while one waits, :meth:`provisioning` says why, in the cluster's words."""

    name = "kubernetes"

    def __init__(self, api: k8s.CoreV1Api, settings: KubernetesSettings, plane: str) -> None:
        # The client's models type each field as optional: its answers are read as plain objects.
        self.api: Any = api
        self.settings, self.plane = settings, plane
        self.images = {name: f"container image {image}" for name, image in settings.images.items()}
        self.default_image = settings.default_image or next(iter(settings.images))
        self.provisioning_timeout = settings.provisioning_timeout

    @property
    def namespace(self) -> str:
        return self.settings.namespace

    def launch(self, request: LaunchRequest) -> dict:
        image = self.settings.images.get(request.image)
        if image is None:
            raise ValueError(f"the kubernetes backend has no image {request.image!r}; images: {', '.join(self.images)}")
        body = manifests.pod(request, image, self.plane, self.settings)
        self.api.create_namespaced_secret(self.namespace, manifests.secret(request, self.plane, self.namespace))
        name = body["metadata"]["name"]
        try:
            created = self.api.create_namespaced_pod(self.namespace, body)
        except BaseException:
            self._delete_one(self.api.delete_namespaced_secret, name)
            raise
        try:
            owner = {"metadata": {"name": name, "uid": created.metadata.uid}}
            self.api.patch_namespaced_secret(name, self.namespace, manifests.owned_by(owner))
        except BaseException:
            self._delete(name)
            raise
        return {"pod": name, "namespace": self.namespace, "uid": created.metadata.uid, "worker": request.worker_name}

    def poll(self, handle: dict) -> WorkerState:
        return self.provisioning(handle).state

    def provisioning(self, handle: dict) -> Provisioning:
        """The pod's state; while it is pending, why (the scheduler's words, or an image it cannot pull)."""
        pod = self._read(handle)
        if pod is None:
            return Provisioning(WorkerState.GONE)
        if reclaimed(pod) or self._node_gone(pod):
            return Provisioning(WorkerState.PREEMPTED, pod.status.message if pod.status else None)
        phase = pod.status.phase if pod.status else None
        if phase in ("Succeeded", "Failed"):
            return Provisioning(WorkerState.GONE, ended(pod))
        if phase == "Running":
            return Provisioning(WorkerState.RUNNING)
        return Provisioning(WorkerState.STARTING, unschedulable(pod) or stuck_container(pod))

    def terminate(self, handle: dict) -> None:
        self._delete(handle["pod"], grace=int(taskyard_settings.kill_grace()) + 1)
        deadline = time.monotonic() + taskyard_settings.kill_grace() + self.settings.timeout
        while self._read(handle) is not None and time.monotonic() < deadline:
            time.sleep(0.2)

    def collect_garbage(self, live: Callable[[], set[str]]) -> list[str]:
        """Delete this control plane's pods (and secrets) whose worker is not ``live()``; their names."""
        selector = f"{manifests.LABEL_PLANE}={self.plane}"
        owned: set[str] = set()
        for listing in (self.api.list_namespaced_pod, self.api.list_namespaced_secret):
            owned |= {item.metadata.name for item in listing(self.namespace, label_selector=selector).items}
        stale = sorted(owned - {manifests.object_name(worker) for worker in live()})
        for name in stale:
            self._delete(name)
        return stale

    def _read(self, handle: dict) -> Any:
        try:
            pod = self.api.read_namespaced_pod(handle["pod"], handle["namespace"])
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return None if handle.get("uid") not in (None, pod.metadata.uid) else pod

    def _node_gone(self, pod: Any) -> bool:
        node = pod.spec.node_name if pod.spec else None
        if not node:
            return False
        try:
            self.api.read_node(node)
        except ApiException as exc:
            return exc.status == 404  # a 403 (no right to read nodes) tells nothing
        return False

    def _delete(self, name: str, grace: int | None = None) -> None:
        for delete in (self.api.delete_namespaced_pod, self.api.delete_namespaced_secret):
            self._delete_one(delete, name, grace)

    def _delete_one(self, delete: Any, name: str, grace: int | None = None) -> None:
        try:
            delete(name, self.namespace, grace_period_seconds=grace)
        except ApiException as exc:
            if exc.status != 404:
                raise

    def close(self) -> None:
        self.api.api_client.close()


def reclaimed(pod: Any) -> bool:
    """Was the pod evicted or preempted (its reason, or a DisruptionTarget condition)?"""
    status = pod.status
    if status is None:
        return False
    if status.reason in RECLAIMED_REASONS:
        return True
    return any(c.type == "DisruptionTarget" and c.status == "True" for c in status.conditions or ())


def unschedulable(pod: Any) -> str | None:
    """The scheduler's reason and message for a pod it could not place; None when it is placed or still trying."""
    for condition in (pod.status.conditions if pod.status else None) or ():
        if condition.type == "PodScheduled" and condition.status == "False":
            return _said(condition.reason or "Unschedulable", condition.message)
    return None


def stuck_container(pod: Any) -> str | None:
    """Why a container of a scheduled pod waits, when it is more than being made (ErrImagePull, ImagePullBackOff...)."""
    for container in _containers(pod):
        waiting = container.state.waiting if container.state else None
        if waiting is not None and waiting.reason not in STARTING_REASONS:
            return _said(f"container {container.name}: {waiting.reason or 'waiting'}", waiting.message)
    return None


def ended(pod: Any) -> str | None:
    """Why a pod ended: the first container that failed (the init container, when the agent never started)."""
    for container in _containers(pod):
        done = container.state.terminated if container.state else None
        if done is not None and done.exit_code:
            return _said(f"container {container.name} exited with code {done.exit_code}", done.reason)
    return _said(pod.status.reason, pod.status.message) if pod.status and pod.status.reason else None


def _containers(pod: Any) -> list[Any]:
    status = pod.status
    return [*(status.init_container_statuses or ()), *(status.container_statuses or ())] if status else []


def _said(what: str, detail: str | None) -> str:
    return f"{what}: {detail}" if detail else what
