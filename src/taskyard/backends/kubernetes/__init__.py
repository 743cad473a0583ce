"""The kubernetes backend: each worker is a pod (``[backends.NAME] type = "kubernetes"``)."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from kubernetes import client as k8s
from kubernetes import config as k8s_config

from taskyard.backends.kubernetes.backend import KubernetesBackend

if TYPE_CHECKING:
    from taskyard.backends.registry import BackendContext
    from taskyard.backends.settings import KubernetesSettings


def from_settings(settings: KubernetesSettings, context: BackendContext) -> KubernetesBackend:
    """A backend on the cluster of the kubeconfig (its context), or on the one it runs in."""
    return KubernetesBackend(k8s.CoreV1Api(api_client(settings)), settings, plane_id(context))


def api_client(settings: KubernetesSettings) -> k8s.ApiClient:
    if settings.kubeconfig is None and settings.context is None:
        try:
            k8s_config.load_incluster_config()
            return k8s.ApiClient()
        except k8s_config.ConfigException:
            pass
    return k8s_config.new_client_from_config(config_file=settings.kubeconfig, context=settings.context)


def plane_id(context: BackendContext) -> str:
    """The label value naming this control plane (its data folder and backend name), stable across restarts."""
    digest = hashlib.sha256(f"{context.data_dir.resolve()}|{context.name}".encode()).hexdigest()[:12]
    return f"{context.name[:40]}-{digest}".lower()


__all__ = ["KubernetesBackend", "from_settings"]
