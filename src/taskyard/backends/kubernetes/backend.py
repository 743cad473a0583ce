"""Workers as Kubernetes pods, through the official client (``pip install 'taskyard[kubernetes]'``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from taskyard import settings as taskyard_settings
from taskyard.backends.base import Backend, LaunchRequest, WorkerState
from taskyard.backends.kubernetes import manifests
from taskyard.backends.settings import KubernetesSettings

log = logging.getLogger("taskyard.backends.kubernetes")

# Why a pod ended that means its node was taken away, not that its worker failed.
RECLAIMED_REASONS = frozenset({"Evicted", "Preempting", "NodeLost", "NodeShutdown", "Terminated"})


class KubernetesBackend(Backend):
    name = "kubernetes"

    def __init__(self, api: k8s.CoreV1Api, settings: KubernetesSettings, plane: str) -> None:
        # The client's models type each field as optional: its answers are read as plain objects.
        self.api: Any = api
        self.settings, self.plane = settings, plane
        self.images = {name: f"container image {image}" for name, image in settings.images.items()}
        self.default_image = settings.default_image or next(iter(settings.images))
        self.reasons: dict[str, str] = {}  # worker name -> why its pod never ran (the scheduler's words)

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
        pod = self._read(handle)
        if pod is None:
            return WorkerState.GONE
        if reclaimed(pod) or self._node_gone(pod):
            return WorkerState.PREEMPTED
        phase = pod.status.phase if pod.status else None
        if phase in ("Succeeded", "Failed"):
            return WorkerState.GONE
        if phase == "Running":
            return WorkerState.RUNNING
        return self._pending(handle, pod)

    def _pending(self, handle: dict, pod: Any) -> WorkerState:
        """A pod not yet running: starting, unless the scheduler has kept it waiting too long."""
        reason = unschedulable(pod)
        if reason is None or _age(pod) < self.settings.provisioning_timeout:
            return WorkerState.STARTING
        self.reasons[handle["worker"]] = f"not scheduled in {self.settings.provisioning_timeout:g} s: {reason}"
        log.warning("worker %s: %s", handle["worker"], self.reasons[handle["worker"]])
        self._delete(handle["pod"])
        return WorkerState.GONE

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
    """The scheduler's message for a pod it could not place; None when it is placed or still trying."""
    for condition in (pod.status.conditions if pod.status else None) or ():
        if condition.type == "PodScheduled" and condition.status == "False":
            return condition.message or condition.reason or "Unschedulable"
    return None


def _age(pod: Any) -> float:
    created = pod.metadata.creation_timestamp
    if created is None:
        return 0.0
    return (datetime.now(timezone.utc) - created).total_seconds()
