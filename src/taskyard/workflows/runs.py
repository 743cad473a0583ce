"""Flow runs from the client: ``run(...) -> FlowRun``, ``FlowRun(id)``, and ``test_tasks(...)``.

The control plane owns a run: it goes on when the client exits, and ``FlowRun(id)`` re-attaches.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from taskyard import bundle
from taskyard.client import Client, default_client
from taskyard.config import WorkerConfig
from taskyard.sdk import Task, Worker, submit
from taskyard.status import TaskStatus
from taskyard.workflows import dag
from taskyard.workflows import folder as flow_folder
from taskyard.workflows.models import FlowInfo, FlowPage, FlowSpec, FlowStatus


class FlowClient:
    """The ``/flows`` calls, over a :class:`taskyard.client.Client`."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def submit(self, spec: FlowSpec) -> FlowInfo:
        return self._info("POST", "/flows", json=spec.model_dump(mode="json", exclude_none=True))

    def upload_bundle(self, run_id: str, path: Path) -> FlowInfo:
        with open(path, "rb") as data:
            return self._info("PUT", f"/flows/{run_id}/bundle", content=data, timeout=600)

    def get(self, run_id: str) -> FlowInfo:
        return self._info("GET", f"/flows/{run_id}")

    def wait(self, run_id: str, timeout: float = 30, changed_from: str = "") -> FlowInfo:
        params = {"timeout": timeout, "changed_from": changed_from}
        return self._info("GET", f"/flows/{run_id}/wait", params=params, timeout=timeout + 30)

    def kill(self, run_id: str) -> FlowInfo:
        return self._info("POST", f"/flows/{run_id}/kill")

    def rerun(self, run_id: str) -> FlowInfo:
        return self._info("POST", f"/flows/{run_id}/rerun")

    def list(self, limit: int = 50) -> list[FlowInfo]:
        response = self.client.request("GET", "/flows", params={"limit": limit})
        return FlowPage.model_validate_json(response.content).flows

    def _info(self, method: str, path: str, **kwargs) -> FlowInfo:
        return FlowInfo.model_validate_json(self.client.request(method, path, **kwargs).content)


class FlowRun:
    """A run of a flow on the control plane. ``FlowRun(id)`` re-attaches to it from any process."""

    def __init__(self, run_id: str, *, client: Client | None = None, info: FlowInfo | None = None) -> None:
        self.id = run_id
        self.client = client or default_client()
        self.flows = FlowClient(self.client)
        self._info = info or self.flows.get(run_id)

    def __repr__(self) -> str:
        return f"FlowRun({self.id!r}, status={self._info.alias!r})"

    def refresh(self) -> FlowInfo:
        self._info = self.flows.get(self.id)
        return self._info

    @property
    def info(self) -> FlowInfo:
        return self.refresh()

    @property
    def last_info(self) -> FlowInfo:
        """The run as last read from the server (no request)."""
        return self._info

    @property
    def status(self) -> FlowStatus:
        return self.refresh().status

    @property
    def states(self) -> dict[str, str]:
        """Every task name to its state: "Waiting", its task's status alias, "Upstream Failed"..."""
        return {task.name: task.state for task in self.refresh().tasks}

    @property
    def tasks(self) -> dict[str, Task]:
        """Task name to its current :class:`taskyard.Task`, for the tasks that started."""
        return {task.name: Task(task.task_id, client=self.client) for task in self.refresh().tasks if task.task_id}

    def wait(self, timeout: float | None = None) -> FlowStatus:
        """Block until the run ends (or ``timeout`` passes); the run goes on if this process dies."""
        for info in self.follow(timeout):
            self._info = info
        return self._info.status

    def follow(self, timeout: float | None = None) -> Iterator[FlowInfo]:
        """Yield the run each time it changes, until it has ended (or ``timeout`` passes)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        info = self._info
        yield info
        while not info.status.is_terminal():
            left = 30.0 if deadline is None else max(0.0, min(30.0, deadline - time.monotonic()))
            if deadline is not None and left <= 0:
                return
            info = self._info = self.flows.wait(self.id, timeout=left, changed_from=info.digest())
            yield info

    def kill(self, wait: bool = True, timeout: float = 120) -> FlowStatus:
        """Kill the run: its running tasks are killed and the others cancelled."""
        self._info = self.flows.kill(self.id)
        return self.wait(timeout) if wait else self._info.status

    def rerun(self) -> FlowRun:
        """A new run that runs again only what did not succeed, reusing the results of what did."""
        info = self.flows.rerun(self.id)
        return FlowRun(info.id, client=self.client, info=info)


def run(
    files_path: str | Path,
    dag_flow: str,
    default_worker_config: WorkerConfig | None = None,
    custom_worker_configs: flow_folder.CustomConfigs = None,
    max_parallel: int | None = None,
    retries: int = 0,
    *,
    flow_id: str | None = None,
    client: Client | None = None,
) -> FlowRun:
    """Start a run of ``dag_flow`` over the task files in ``files_path`` and return at once.

    Independent tasks run in parallel (at most ``max_parallel`` at once); a task starts when all its
    upstream tasks succeeded, and finds their outputs under ``inputs/<upstream>/``; each task is
    tried ``retries`` more times if it does not succeed. Worker configs: see :mod:`taskyard.workflows.folder`.
    """
    folder = Path(files_path)
    graph = dag.parse(dag_flow)
    files = flow_folder.task_files(folder, graph)
    configs = flow_folder.worker_configs(folder, files, default_worker_config, custom_worker_configs)
    client = client or default_client()
    flows = FlowClient(client)
    with bundle.pack(folder) as packed:
        spec = FlowSpec(
            flow_id=flow_id, dag_flow=dag_flow, task_files=files, worker_configs=configs, max_parallel=max_parallel,
            retries=retries, bundle_sha256=packed.sha256, bundle_size=packed.size,
        )
        info = flows.submit(spec)
        if info.upload_required:
            info = flows.upload_bundle(info.id, packed.path)
    return FlowRun(info.id, client=client, info=info)


def test_tasks(
    dag_flow: str,
    files_path: str | Path,
    default_worker_config: WorkerConfig | None = None,
    custom_worker_configs: flow_folder.CustomConfigs = None,
    terminate_on_success: bool = True,
    terminate_on_failed: bool = False,
    *,
    client: Client | None = None,
) -> dict[str, bool]:
    """Run the flow's tasks one after another from this process, printing their output, before deploying it.

    Each task runs on a fresh worker with its merged worker config and its upstream tasks' outputs
    under ``inputs/``; its worker is terminated after a success (``terminate_on_success``) and kept
    after a failure for a look inside (unless ``terminate_on_failed``). Stops at the first failure.
    Returns each task that ran to whether it succeeded.
    """
    folder = Path(files_path)
    graph = dag.parse(dag_flow)
    files = flow_folder.task_files(folder, graph)
    configs = flow_folder.worker_configs(folder, files, default_worker_config, custom_worker_configs)
    results: dict[str, bool] = {}
    with tempfile.TemporaryDirectory(prefix="taskyard-flow-") as scratch:
        for name in _in_order(graph):
            stage = Path(scratch) / name
            shutil.copytree(folder, stage)
            for upstream in graph.upstream[name]:
                (Path(scratch) / "outputs" / upstream).mkdir(parents=True, exist_ok=True)
                shutil.copytree(Path(scratch) / "outputs" / upstream, stage / "inputs" / upstream, dirs_exist_ok=True)
            task = submit(files[name], stage, configs[name], terminate_on_completion=False, client=client)
            results[name] = task.wait(print_logs=True) is TaskStatus.SUCCESS
            _after(task, results[name], terminate_on_success, terminate_on_failed)
            if not results[name]:
                return results
            if task.info.outputs is not None:
                task.download_outputs(output_dir=Path(scratch) / "outputs" / name)
    return results


test_tasks.__test__ = False  # type: ignore[attr-defined]  # not a test for pytest, whoever imports it


def _after(task: Task, success: bool, terminate_on_success: bool, terminate_on_failed: bool) -> None:
    if task.worker_name and (terminate_on_success if success else terminate_on_failed):
        Worker(task.worker_name, client=task.client).terminate()


def _in_order(graph: dag.Dag) -> list[str]:
    """The task names, each after all its upstream ones (the flow's own order where it is free)."""
    done: list[str] = []
    while len(done) < len(graph.names):
        done += [name for name in graph.names if name not in done and set(graph.upstream[name]) <= set(done)][:1]
    return done
