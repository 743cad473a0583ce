"""The Ray backend on a real two-node Ray cluster; run by ``test_ray.py`` inside a private network namespace.

Not collected on its own (its name is not ``test_*``): Ray listens on every address it has, so
these tests only run where the network holds nothing but ``lo``. One cluster for the module: a
head node, and a second node with the custom resource ``side`` and the label ``zone=b``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import ray
from ray.cluster_utils import Cluster

import taskyard
from taskyard.backends import Backend, WorkerState
from taskyard.backends.ray import RayBackend
from taskyard.backends.settings import RaySettings
from taskyard.status import TaskStatus

from contract import BackendContract, start_control_plane, worker_handle
from support import Server, processes_in, wait_for, write

NAMESPACE = "taskyard-tests"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2})
    cluster.side = cluster.add_node(num_cpus=2, resources={"side": 4}, labels={"zone": "b"})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.fixture(scope="module")
def work_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ray-nodes")


def _settings(cluster: Cluster, work_dir: Path, **extra) -> RaySettings:
    return RaySettings(address=cluster.address, namespace=NAMESPACE, work_dir=str(work_dir), **extra)


CONFIG = """\
backend = "ray"
max_workers = 3

[backends.ray]
type = "ray"
address = "{address}"
namespace = "{namespace}"
work_dir = "{work_dir}"
capacity_every = 1
idle_seconds = 8

[backends.ray-side]
type = "ray"
address = "{address}"
namespace = "{namespace}"
work_dir = "{work_dir}"
resources = {{ side = 1 }}
capacity_every = 1
idle_seconds = 8

[backends.ray-zone-b]
type = "ray"
address = "{address}"
namespace = "{namespace}"
work_dir = "{work_dir}"
label_selector = {{ zone = "b" }}
idle_seconds = 8

[backends.ray-spare]
type = "ray"
address = "{address}"
namespace = "{namespace}"
work_dir = "{work_dir}"
resources = {{ spare = 1 }}
capacity_every = 1
idle_seconds = 8

[pools.side]
backend = "ray-side"
max_workers = 2

[pools.zone-b]
backend = "ray-zone-b"
max_workers = 2

[pools.spare]
backend = "ray-spare"
max_workers = 1
"""


@pytest.fixture(scope="module")
def contract_server(cluster, work_dir, tmp_path_factory) -> Iterator[Server]:
    """A control plane whose default pool and three more are on the cluster, with a kill grace of 1 s."""
    home = tmp_path_factory.mktemp("ray-control-plane") / "home"
    home.mkdir()
    config = home / "server.toml"
    config.write_text(CONFIG.format(address=cluster.address, namespace=NAMESPACE, work_dir=work_dir))
    server = start_control_plane(home, TASKYARD_KILL_GRACE="1", TASKYARD_CONFIG=str(config))
    yield server
    server.stop()


class TestRayBackend(BackendContract):
    @pytest.fixture
    def backend(self, cluster, work_dir) -> Iterator[Backend]:
        backend = RayBackend(_settings(cluster, work_dir))
        backend.name = "ray"
        yield backend
        backend.close()

    def reopen(self, backend: Backend, data_dir: Path) -> Backend:
        assert isinstance(backend, RayBackend)
        again = RayBackend(backend.settings)
        again.name = backend.name
        return again

    def crash(self, handle: dict) -> None:
        """The agent alone dies; its actor, and what the agent started, live on."""
        actor = ray.get_actor(handle["actor"], namespace=handle["namespace"])
        ray.get(actor.crash_agent.remote(), timeout=30)

    def traces(self, backend: Backend, worker_name: str) -> set[str]:
        assert isinstance(backend, RayBackend)
        folder = Path(backend.settings.work_dir or "") / worker_name
        found = {f"process {pid}" for pid in processes_in(folder)}
        if folder.exists():
            found.add(f"folder {folder}")
        return found | {f"actor {name} hosting it" for name in _hosts_of(worker_name)}

    def force_cleanup(self, backend: Backend, worker_name: str) -> None:
        assert isinstance(backend, RayBackend)
        for name in _hosts_of(worker_name):
            with contextlib.suppress(ValueError):
                ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
        folder = Path(backend.settings.work_dir or "") / worker_name
        for pid in processes_in(folder):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(folder, ignore_errors=True)

    # -- ray only ----------------------------------------------------------------------------------

    def test_a_host_whose_worker_ended_starts_the_next_worker_of_its_shape(self, backend, launch_worker):
        first_request, first = launch_worker()
        self._running(backend, first)
        backend.terminate(first)
        assert backend.poll(first) is WorkerState.GONE and self.traces(backend, first_request.worker_name) == set()
        second_request, second = launch_worker()
        assert second["actor"] == first["actor"]  # the same Ray actor, kept: no new Ray worker process
        self._running(backend, second)
        assert backend.poll(first) is WorkerState.GONE  # the first worker's handle names an ended worker
        assert backend.where(second)["dir"].endswith(second_request.worker_name)
        backend.terminate(first)  # about the ended worker: leaves the second alone
        assert backend.poll(second) is WorkerState.RUNNING


def _hosts_of(worker_name: str) -> list[str]:
    """The actors of the namespace that host the worker now."""
    hosting = []
    for name in ray.util.list_named_actors():
        with contextlib.suppress(ValueError, ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
            if ray.get(ray.get_actor(name, namespace=NAMESPACE).where.remote(worker_name), timeout=10):
                hosting.append(name)
    return hosting


# -- placement, sizes, lost nodes ------------------------------------------------------------------


def _node_of(server: Server, worker_name: str, settings: RaySettings) -> str:
    """The id of the node the worker's agent runs on, as its actor tells."""
    handle, backend = worker_handle(server, worker_name), RayBackend(settings)
    return wait_for(lambda: backend.where(handle).get("node_id"), timeout=30)


NODE_TASK = "import os\nprint('on', os.environ['TASKYARD_WORKER_NAME'])\n"


@pytest.mark.parametrize("pool", ["side", "zone-b"])
def test_a_pool_steered_to_the_second_node_runs_its_task_there(cluster, work_dir, contract_server, tmp_path, pool):
    write(tmp_path, "where.py", NODE_TASK + "open(os.environ['TASKYARD_OUTPUT_DIR'] + '/out.txt', 'w').write('x')\n")
    task = taskyard.submit("where.py", tmp_path, pool=pool, terminate_on_completion=False,
                           client=contract_server.client)
    try:
        assert task.wait(timeout=120) is TaskStatus.SUCCESS, task.logs()
        assert f"on {task.worker_name}" in task.logs()
        assert _node_of(contract_server, task.worker_name, _settings(cluster, work_dir)) == cluster.side.node_id
        assert "out.txt" in task.list_files()  # its outputs came back, as from a local worker
    finally:
        contract_server.client.terminate_worker(task.worker_name)


def test_sizes_answer_per_backend(cluster, contract_server):
    http = contract_server.client._http
    side = wait_for(lambda: http.get("/sizes", params={"backend": "ray-side"}).json()["capacity"], timeout=30)
    assert side["cpu"] == 2  # the second node alone has the resource
    whole = wait_for(lambda: http.get("/sizes", params={"backend": "ray"}).json()["capacity"], timeout=30)
    assert whole["cpu"] == 4
    assert http.get("/sizes").json()["capacity"]["cpu"] == 4  # the default pool's backend
    refused = http.get("/sizes", params={"backend": "nope"})
    assert refused.status_code == 422 and "nope" in refused.text


SLOW_TASK = "import time\nprint('started', flush=True)\ntime.sleep(12)\nprint('done')\n"


def test_a_node_that_leaves_mid_task_ends_it_task_runner_terminated_and_it_runs_again(
    cluster, work_dir, contract_server, tmp_path
):
    spare = cluster.add_node(num_cpus=1, resources={"spare": 1})
    write(tmp_path, "slow.py", SLOW_TASK)
    task = taskyard.submit("slow.py", tmp_path, pool="spare", max_retries=1, terminate_on_completion=False,
                           client=contract_server.client)
    wait_for(lambda: "started" in task.logs(), timeout=120)
    first = task.refresh().worker_name
    settings = _settings(cluster, work_dir, resources={"spare": 1})
    assert _node_of(contract_server, first, settings) == spare.node_id
    cluster.remove_node(spare)
    replacement = cluster.add_node(num_cpus=1, resources={"spare": 1})
    assert task.wait(timeout=180) is TaskStatus.SUCCESS, task.logs()
    history = [entry.status for entry in task.status_history]
    assert TaskStatus.TASK_RUNNER_TERMINATED in history, history
    assert history.count(TaskStatus.IN_PROGRESS) == 2
    assert task.worker_name != first
    assert _node_of(contract_server, task.worker_name, settings) == replacement.node_id
    assert "running it again (retry 1 of 1)" in task.logs()
    contract_server.client.terminate_worker(task.worker_name)


def test_kill_stops_a_running_task_on_the_cluster(contract_server, tmp_path):
    write(tmp_path, "slow.py", SLOW_TASK.replace("12", "600"))
    task = taskyard.submit("slow.py", tmp_path, client=contract_server.client)
    wait_for(lambda: "started" in task.logs(), timeout=120)
    started = time.monotonic()
    task.kill()
    assert task.wait(timeout=60) is TaskStatus.KILLED
    assert time.monotonic() - started < 30


def test_a_task_past_its_time_to_live_on_the_cluster_is_timed_out(contract_server, tmp_path):
    write(tmp_path, "slow.py", "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
    task = taskyard.submit("slow.py", tmp_path, time_to_live="2s", client=contract_server.client)
    assert task.wait(timeout=120) is TaskStatus.TASK_TIMED_OUT
    assert "time_to_live of 2 s" in task.info.reason
    assert "up" in task.logs()


def test_logs_and_outputs_of_a_task_on_the_cluster_come_back_whole(contract_server, tmp_path):
    src = tmp_path / "src"
    write(
        src, "make.py",
        "import os, pathlib\nfor i in range(2000):\n    print('line', i)\n"
        "(pathlib.Path(os.environ['TASKYARD_OUTPUT_DIR']) / 'result.txt').write_text('42')\n",
    )
    task = taskyard.submit("make.py", src, client=contract_server.client)
    assert task.wait(timeout=120) is TaskStatus.SUCCESS
    assert [line for line in task.logs().splitlines() if line.startswith("line ")] == [f"line {i}" for i in range(2000)]
    assert (task.download_outputs(output_dir=tmp_path / "got") / "result.txt").read_text() == "42"
