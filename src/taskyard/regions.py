"""``taskyard.regions``: the control plane a task runs on, and its workers, as Practicus AI names them.

``region_factory(worker_config_dict).worker_list`` lists the live workers, each with ``name``,
``status`` ("Provisioning", "Running"...), ``creation_time`` and ``terminate()``, as Practicus AI's
``run_task_safe`` DAG cleans up stuck workers. The control plane is the one taskyard reaches from
where this runs (in Airflow, the ``taskyard_default`` connection; else ``TASKYARD_URL``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from taskyard.client import Client
from taskyard.sdk import Worker


class Region:
    """A taskyard control plane."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __str__(self) -> str:
        return f"taskyard region at {self.client.url}"

    @property
    def worker_list(self) -> list[Worker]:
        """The workers not yet ended (an admin sees everyone's), oldest first."""
        infos = sorted(self.client.workers(), key=lambda info: info.created_at)
        return [Worker(info.name, client=self.client, info=info) for info in infos]


def region_factory(worker_config: Mapping[str, Any] | None = None, *, client: Client | None = None) -> Region:
    """The region for a worker config dict; its Practicus login keys (service_url, email...) are not needed."""
    from taskyard.workflows.airflow import airflow_client

    return Region(client or airflow_client())
