"""``taskyard.regions``: the control plane a task runs on, and its workers, as Practicus AI names them.

``taskyard.get_region()`` is the control plane this process uses (``TASKYARD_URL``, else the
embedded one); ``region_factory(worker_config_dict)`` the one reached from where it runs (in
Airflow, the ``taskyard_default`` connection; else the same). A region lists its workers
(``worker_list``: each with ``name``, ``status`` ("Provisioning", "Running"...), ``creation_time``
and ``terminate()``, as Practicus AI's ``run_task_safe`` DAG cleans up stuck workers), its sizes
(``worker_size_list``) and images (``worker_image_list``), and makes workers of the caller's own
with no task yet (``create_worker``, ``get_or_create_worker``), for ``worker.run_task(...)`` calls.
Each list has ``to_pandas()``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar, cast

from taskyard.client import Client, default_client
from taskyard.config import WorkerConfig
from taskyard.errors import Unsupported
from taskyard.models import ImageInfo, SizeInfo, WorkerRequest
from taskyard.sdk import Worker

T = TypeVar("T")
Duration = str | float | None  # "1h30m" or seconds

# Region names of the Practicus AI SDK that mean nothing here, and what to use instead.
_ELSEWHERE = {
    "create_workspace": "a workspace is a Practicus AI desktop; here, make a worker with region.create_worker(...) "
    "and look into it with worker.open_notebook() or `taskyard workers shell NAME`",
    "deploy_app": "taskyard runs tasks, it does not host apps: run the app's code as a task (taskyard.run_task)",
    "deploy_model": "taskyard runs tasks, it does not serve models: run the training or scoring code as a task",
}
for _name in ("app_list", "app_deployment_setting_list", "app_prefix_list", "delete_app", "delete_app_version"):
    _ELSEWHERE[_name] = _ELSEWHERE["deploy_app"]
for _name in ("model_list", "model_prefix_list", "model_deployment_list"):
    _ELSEWHERE[_name] = _ELSEWHERE["deploy_model"]


class RegionList(list[T]):
    """A list, as Practicus AI's region lists are, with ``to_pandas()``."""

    def to_pandas(self) -> Any:
        """The items as a pandas DataFrame, one row each (pandas must be installed)."""
        try:
            import pandas as pd
        except ImportError:
            raise Unsupported("to_pandas() needs pandas: pip install pandas; the list itself is a plain list") from None
        return pd.DataFrame([_row(item) for item in self])


def _row(item: object) -> dict:
    if isinstance(item, Worker):
        return {"name": item.name, "status": item.status.value, "size": item.size, "image": item.image,
                "creation_time": item.creation_time}
    return cast("Any", item).model_dump()


class Region:
    """A taskyard control plane."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def __str__(self) -> str:
        return f"taskyard region at {self.client.url}"

    def __getattr__(self, name: str) -> Any:
        if name in _ELSEWHERE:
            raise Unsupported(f"region.{name} is of the Practicus AI platform: {_ELSEWHERE[name]}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def worker_list(self) -> RegionList[Worker]:
        """The workers not yet ended (an admin sees everyone's), oldest first."""
        infos = sorted(self.client.workers(), key=lambda info: info.created_at)
        return RegionList(Worker(info.name, client=self.client, info=info) for info in infos)

    @property
    def worker_size_list(self) -> RegionList[SizeInfo]:
        """The worker sizes the server offers (``WorkerConfig(worker_size=...)``), each with its cpu,
        memory and gpu, whether it is the default and whether the server's host can hold it."""
        return RegionList(self.client.sizes().sizes)

    @property
    def worker_image_list(self) -> RegionList[ImageInfo]:
        """The worker images the server's backend can start (``WorkerConfig(worker_image=...)``), the
        default first. The local backend has no container images: each of its names runs the
        Python of the machine the server runs on, and its description says so."""
        return RegionList(self.client.images())

    def create_worker(
        self, worker_config: WorkerConfig | None = None, *, pool: str = "default", time_to_live: Duration = None
    ) -> Worker:
        """A new worker of your own with no task yet, of the config's size and image; tasks sent to it
        (``worker.run_task(...)``) get its config (env variables, secrets, startup script...) under
        their own, its startup script run before each, and find the files of its task folder. It
        counts against its pool's limit, waits Provisioning while the pool is full, and stays until
        ``worker.terminate()`` or its ``time_to_live`` ("1h30m" or seconds). Returns at once: see
        ``worker.wait_until_ready()``."""
        return self._request(worker_config, pool, time_to_live, reuse=False)

    def get_or_create_worker(
        self, worker_config: WorkerConfig | None = None, *, pool: str = "default", time_to_live: Duration = None
    ) -> Worker:
        """Your oldest live worker made by ``create_worker`` in ``pool`` with the same size and image as
        ``worker_config`` asks for; else a new one, as :meth:`create_worker` makes it."""
        return self._request(worker_config, pool, time_to_live, reuse=True)

    def _request(self, config: WorkerConfig | None, pool: str, ttl: Duration, *, reuse: bool) -> Worker:
        request = WorkerRequest(worker_config=config or WorkerConfig(), pool=pool, reuse=reuse,
                                time_to_live=cast("float | None", ttl))  # a "1h" is made seconds by its validator
        info = self.client.create_worker(request)
        return Worker(info.name, client=self.client, info=info)


def get_region(client: Client | None = None) -> Region:
    """The control plane this process uses: ``TASKYARD_URL``'s, else the embedded one."""
    return Region(client or default_client())


def region_factory(worker_config: Mapping[str, Any] | None = None, *, client: Client | None = None) -> Region:
    """The region for a worker config dict; its Practicus login keys (service_url, email...) are not needed."""
    from taskyard.workflows.airflow import airflow_client

    return Region(client or airflow_client())


def create_worker(worker_config: WorkerConfig | None = None, **options: Any) -> Worker:
    """``get_region().create_worker(...)``: a new worker of your own with no task yet."""
    return get_region(options.pop("client", None)).create_worker(worker_config, **options)


def get_or_create_worker(worker_config: WorkerConfig | None = None, **options: Any) -> Worker:
    """``get_region().get_or_create_worker(...)``: a live worker made alike, or a new one."""
    return get_region(options.pop("client", None)).get_or_create_worker(worker_config, **options)

