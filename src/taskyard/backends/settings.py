"""What a ``[backends.NAME]`` table of the server's configuration may hold, one model per backend type.

Each model is validated at start; a key it does not know is refused. The keys every type has
are those of :class:`BackendSettings`: how long the control plane waits for one of the
backend's calls and how many of its calls may run at once (off the scheduler's own thread).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


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


IDLE_MIN = 5.0  # seconds: below this a kept host could end itself while it is being given a worker


class RayImage(BaseModel):
    """``[backends.NAME.images.IMAGE]``: a worker image of a Ray backend, as the Ray runtime environment it runs in."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = Field(min_length=1, pattern=r"^[^\n]*$")
    # Ray's runtime_env: image_uri (a container image, where the cluster runs them), pip, env_vars...
    runtime_env: dict[str, Any] = Field(default_factory=dict)


class RaySettings(BackendSettings):
    """``type = "ray"``: workers are started on a Ray cluster (``pip install 'taskyard[ray]'``).

    Placement is the backend's: every worker it starts asks Ray for ``resources`` (custom resources,
    on top of the size's CPUs, GPUs and memory) and runs only on nodes whose labels match
    ``label_selector``. Pools that need other placements name other backends on the same cluster.
    """

    type: Literal["ray"] = "ray"
    address: str = Field(min_length=1)  # ray://head:10001, or the GCS address head:6379
    namespace: str | None = None  # the Ray namespace of the workers' actors; None: "taskyard"
    resources: dict[str, float] = Field(default_factory=dict)  # custom resources each worker asks for
    label_selector: dict[str, str] = Field(default_factory=dict)  # node labels a worker's node must have
    images: dict[str, RayImage] = Field(default_factory=dict)  # worker images besides "python"
    work_dir: str | None = None  # where worker folders go on the nodes; None: the node's temporary folder
    capacity_every: float = Field(default=10.0, gt=0, le=3600)  # seconds between looks at the cluster's size
    # A worker's actor (a Ray worker process, slow to start) is kept this many seconds after its worker
    # ended, holding its resources, for the next worker of the same size and image; at most idle_hosts of them.
    idle_seconds: float = Field(default=30.0, ge=IDLE_MIN, le=3600)
    idle_hosts: int = Field(default=8, ge=0, le=1000)

    @field_validator("resources")
    @classmethod
    def _positive(cls, value: dict[str, float]) -> dict[str, float]:
        for name, amount in value.items():
            if amount <= 0 or name in ("CPU", "GPU", "memory"):
                raise ValueError(f"resources.{name}: a custom resource with an amount above 0 "
                                 "(CPU, GPU and memory come from the worker size)")
        return value


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
    # seconds from a worker's launch until its agent calls in (its pod placed, pulled, started): past it the
    # worker is given up with the cluster's reason; for this backend's workers it replaces TASKYARD_PROVISION_TIMEOUT
    provisioning_timeout: float = Field(default=600.0, gt=0)
    time_to_live: int | None = Field(default=None, gt=0)  # seconds: the pod's activeDeadlineSeconds
