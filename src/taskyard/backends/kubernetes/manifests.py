"""The Pod and Secret a worker is made of, as plain manifests (dicts the API server takes as they are).

The worker's token lives only in its Secret, which the pod owns (deleted with it). An init container
copies the token (and, with an agent image, the agent) into the worker's folder, an ``emptyDir``
the main container sees; the main container never mounts the Secret, and the agent removes its
token file as it starts, so nothing the task can read holds it.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from taskyard.backends.base import LaunchRequest, Resources
from taskyard.backends.settings import KubernetesSettings

LABEL_PLANE = "taskyard.io/control-plane"
LABEL_WORKER = "taskyard.io/worker"
WORKER_DIR = "/var/lib/taskyard/worker"
SECRET_DIR = "/var/run/taskyard/secret"
AGENT_DIR = "/opt/taskyard"  # in the agent image: the agent's packages (pip install --target)
TOKEN_KEY = "agent.token"
START_AGENT = "exec python3 -m taskyard.agent"


def object_name(worker_name: str) -> str:
    """A DNS-1123 name for the worker's pod and secret."""
    name = re.sub(r"[^a-z0-9-]+", "-", worker_name.lower()).strip("-")
    return f"taskyard-{name}"[:63].rstrip("-")


def labels(plane: str, worker_name: str) -> dict[str, str]:
    return {LABEL_PLANE: plane, LABEL_WORKER: object_name(worker_name)[len("taskyard-"):],
            "app.kubernetes.io/managed-by": "taskyard"}


def secret(request: LaunchRequest, plane: str, namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": object_name(request.worker_name), "namespace": namespace,
                         "labels": labels(plane, request.worker_name)},
            "stringData": {TOKEN_KEY: request.agent_token}}


def owned_by(pod: dict) -> dict:
    """The ownerReferences patch that makes a secret go with its pod."""
    meta = pod["metadata"]
    return {"metadata": {"ownerReferences": [
        {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]}]}}


def pod(request: LaunchRequest, image: str, plane: str, settings: KubernetesSettings) -> dict:
    name = object_name(request.worker_name)
    spec: dict = {"restartPolicy": "Never", "initContainers": [_init_container(image, settings)],
                  "containers": [_agent_container(request, image, settings)],
                  "volumes": [{"name": "worker", "emptyDir": {}},
                              {"name": "token", "secret": {"secretName": name, "defaultMode": 0o400}}],
                  "automountServiceAccountToken": False}
    if settings.time_to_live is not None:
        spec["activeDeadlineSeconds"] = settings.time_to_live
    if settings.service_account:
        spec["serviceAccountName"] = settings.service_account
    if settings.node_selector:
        spec["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        spec["tolerations"] = [dict(item) for item in settings.tolerations]
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": settings.namespace, "labels": labels(plane, request.worker_name)},
            "spec": spec}


def _init_container(image: str, settings: KubernetesSettings) -> dict:
    """Copies the token (and the agent, from the agent image) into the worker's folder."""
    copy = f"cp {SECRET_DIR}/{TOKEN_KEY} {WORKER_DIR}/{TOKEN_KEY}"
    if settings.agent_image:
        copy += f" && cp -R {AGENT_DIR} {WORKER_DIR}/.agent"
    return {"name": "taskyard-init", "image": settings.agent_image or image, "command": ["sh", "-c", copy],
            "volumeMounts": [{"name": "worker", "mountPath": WORKER_DIR},
                             {"name": "token", "mountPath": SECRET_DIR, "readOnly": True}]}


def _agent_container(request: LaunchRequest, image: str, settings: KubernetesSettings) -> dict:
    env = {"TASKYARD_AGENT_URL": request.control_plane_url, "TASKYARD_WORKER_NAME": request.worker_name,
           "TASKYARD_WORKER_DIR": WORKER_DIR, "TASKYARD_AGENT_WORKER": json.dumps(_agent_settings(request))}
    if settings.agent_image:
        env["PYTHONPATH"] = f"{WORKER_DIR}/.agent"
    container: dict[str, Any] = {
        "name": "agent", "image": image, "command": ["sh", "-c", START_AGENT], "workingDir": WORKER_DIR,
                 "env": [{"name": key, "value": value} for key, value in env.items()],
                 "volumeMounts": [{"name": "worker", "mountPath": WORKER_DIR}]}
    if request.resources is not None:
        container["resources"] = resources(request.resources)
    return container


def _agent_settings(request: LaunchRequest) -> dict:
    memory = request.resources.memory if request.resources is not None else None
    return {"size": request.size, "memory": memory}


def resources(wanted: Resources) -> dict:
    """Requests and limits alike (a Guaranteed pod), GPUs as ``nvidia.com/gpu``."""
    amounts = {"cpu": f"{math.ceil(wanted.cpu * 1000)}m", "memory": str(wanted.memory)}
    if wanted.gpus:
        amounts["nvidia.com/gpu"] = str(len(wanted.gpus))
    return {"requests": dict(amounts), "limits": dict(amounts)}
