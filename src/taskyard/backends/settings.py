"""What a ``[backends.NAME]`` table of the server's configuration may hold, one model per backend type.

Each model is validated at start; a key it does not know is refused. The keys every type has
are those of :class:`BackendSettings`: how long the control plane waits for one of the
backend's calls and how many of its calls may run at once (off the scheduler's own thread).
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class BackendSettings(BaseModel):
    """The keys every ``[backends.NAME]`` table has."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: str
    timeout: float = Field(default=30.0, gt=0, le=3600)  # seconds one launch, poll or terminate may take
    threads: int = Field(default=4, ge=1, le=64)  # calls to this backend running at once


class LocalSettings(BackendSettings):
    """``type = "local"``: workers are processes on the control plane's own machine."""

    type: Literal["local"] = "local"
    sandbox: Literal["auto", "required", "off"] | None = None  # None: the server's ``sandbox``
    gpus: tuple[str, ...] | None = None  # None: the server's ``gpus``


class RaySettings(BackendSettings):
    """``type = "ray"``: workers are started on a Ray cluster (``pip install 'taskyard[ray]'``)."""

    type: Literal["ray"] = "ray"
    address: str = Field(min_length=1)  # ray://head:10001, or the GCS address head:6379
    namespace: str | None = None


class KubernetesSettings(BackendSettings):
    """``type = "kubernetes"``: workers are pods (``pip install 'taskyard[kubernetes]'``)."""

    type: Literal["kubernetes"] = "kubernetes"
    namespace: str = "default"
    context: str | None = None  # the kubeconfig context; None: the current one, or the in-cluster account
    kubeconfig: str | None = None  # a kubeconfig file; None: $KUBECONFIG, ~/.kube/config, or in-cluster
    # worker_image name -> container image; the agent is installed in each, unless agent_image is set
    images: dict[str, str] = Field(default_factory=lambda: {"python": "python:3.12-slim"}, min_length=1)
    default_image: str | None = None  # None: the first of images
    agent_image: str | None = None  # an image holding the agent, copied in by an init container
    service_account: str | None = None
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: tuple[dict, ...] = ()  # as the pod spec writes them
    provisioning_timeout: float = Field(default=600.0, gt=0)  # seconds a pod may stay unscheduled
    time_to_live: int | None = Field(default=None, gt=0)  # seconds: the pod's activeDeadlineSeconds
