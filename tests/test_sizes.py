"""Worker sizes from the server's configuration file: the API, ``taskyard sizes``, the SDK, and submit."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

import taskyard
from taskyard import WorkerConfig
from taskyard.backends.local.host import host_capacity
from taskyard.cli import app
from taskyard.errors import InvalidInput
from taskyard.server.config import GiB, memory_text
from taskyard.server.services.sizes import capacity_text

from support import Server, default_client_of, wait_for, write

CONFIG = """
max_workers = 3
warm_workers = 0
gpus = []

[sizes.Tiny]
cpu = 0.5
memory = "256MiB"

[sizes.Small]
cpu = 1
memory = "1GiB"
default = true

[sizes.Huge]
cpu = 10000
memory = "1GiB"

[sizes.Gpu]
cpu = 1
memory = "1GiB"
gpu = 1
"""


@pytest.fixture(scope="module")
def sized(tmp_path_factory) -> Iterator[Server]:
    """A control plane whose TASKYARD_CONFIG names four sizes, one too big for any host, one needing a GPU."""
    home = tmp_path_factory.mktemp("sized")
    config = write(home, "taskyard.toml", CONFIG)
    server = Server(home / "home", TASKYARD_CONFIG=str(config)).start()
    yield server
    server.stop()


@pytest.fixture
def cli(sized, monkeypatch) -> Iterator[CliRunner]:
    with default_client_of(sized, monkeypatch):
        yield CliRunner()


def host() -> str:
    """What this host holds, as the server words it (the server runs here, with no GPUs given)."""
    return capacity_text(host_capacity(()))


def submit(server: Server, folder, size: str, **kwargs) -> taskyard.Task:
    write(folder, "hello.py", "print('hello')\n")
    config = WorkerConfig(worker_size=size)
    return taskyard.submit("hello.py", files_path=folder, worker_config=config, client=server.client, **kwargs)


# -- what the server offers ------------------------------------------------------------------------


def test_the_api_lists_the_sizes_in_file_order_with_what_fits(sized):
    body = sized.client.request("GET", "/sizes").json()
    capacity = host_capacity(())
    assert body["capacity"] == {
        "cpu": capacity.cpu,
        "memory": capacity.memory,
        "memory_text": memory_text(capacity.memory),
        "gpus": [],
        "text": host(),
    }
    tiny, small, huge, gpu = body["sizes"]
    assert tiny == {
        "name": "Tiny",
        "cpu": 0.5,
        "memory": 256 << 20,
        "memory_text": "256 MiB",
        "gpu": 0,
        "default": False,
        "fits": True,
        "why": None,
    }
    assert (small["name"], small["default"], small["fits"], small["memory"]) == ("Small", True, True, GiB)
    assert (huge["fits"], huge["why"]) == (False, f"needs 10000 cpu, 1 GiB; this host has {host()}")
    assert (gpu["fits"], gpu["why"]) == (False, f"needs 1 cpu, 1 GiB, 1 GPU; this host has {host()}")


def test_the_api_needs_a_token(sized):
    import httpx

    assert httpx.get(sized.url + "/api/v1/sizes").status_code == 401


def test_worker_sizes_in_the_sdk(sized):
    sizes = taskyard.worker_sizes(client=sized.client)
    assert [size.name for size in sizes] == ["Tiny", "Small", "Huge", "Gpu"]
    assert [size.name for size in sizes if size.default] == ["Small"]
    assert [size.fits for size in sizes] == [True, True, False, False]


def test_the_embedded_default_server_offers_the_built_in_sizes(server):
    sizes = taskyard.worker_sizes(client=server.client)
    assert [(size.name, size.cpu, size.memory_text) for size in sizes] == [
        ("X-Small", 1, "1 GiB"),
        ("Small", 1, "2 GiB"),
        ("Medium", 2, "4 GiB"),
        ("Large", 4, "8 GiB"),
        ("X-Large", 8, "16 GiB"),
    ]
    assert [size.default for size in sizes] == [True, False, False, False, False]


def test_taskyard_sizes_prints_a_table_and_the_host(cli):
    result = cli.invoke(app, ["sizes"])
    assert result.exit_code == 0, result.output
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows[0] == ["NAME", "CPU", "MEMORY", "GPU", "DEFAULT", "FITS"]
    assert ["Tiny", "0.5", "256", "MiB", "0", "-", "yes"] in rows
    assert ["Small", "1", "1", "GiB", "0", "yes", "yes"] in rows
    huge = next(line for line in result.stdout.splitlines() if line.startswith("Huge"))
    assert f"no: needs 10000 cpu, 1 GiB; this host has {host()}" in huge
    assert result.stderr == f"the server's host has {host()}; a size that does not fit is refused\n"


def test_taskyard_sizes_json(cli):
    result = cli.invoke(app, ["sizes", "--json"])
    assert result.exit_code == 0, result.output
    assert [size["name"] for size in json.loads(result.stdout)["sizes"]] == ["Tiny", "Small", "Huge", "Gpu"]


def test_the_default_pool_has_the_files_limits(sized):
    default = sized.client.pool("default")
    assert (default.max_workers, default.warm_workers) == (3, 0)


# -- submitting against them -----------------------------------------------------------------------


def test_a_size_in_any_case_is_stored_under_its_own_name(sized, tmp_path):
    task = submit(sized, tmp_path, "sMALL")
    worker = wait_for(lambda: sized.client.task(task.id).worker_name)
    assert sized.client.worker(worker).size == "Small"


def test_the_same_task_id_in_another_letter_case_is_the_same_task(sized, tmp_path):
    task_id = f"sized-{time.monotonic_ns()}"
    first = submit(sized, tmp_path, "small", task_id=task_id)
    again = submit(sized, tmp_path, "SMALL", task_id=task_id)
    assert first.id == again.id == task_id


def test_an_unknown_size_is_refused_with_the_servers_sizes(sized, tmp_path):
    with pytest.raises(InvalidInput) as refused:
        submit(sized, tmp_path, "Medium")
    assert refused.value.field == "worker_config.worker_size"
    assert refused.value.message == "unknown worker_size 'Medium'; valid sizes: Tiny, Small, Huge, Gpu"


@pytest.mark.parametrize(
    ("size", "needs"), [("huge", "10000 cpu, 1 GiB"), ("Gpu", "1 cpu, 1 GiB, 1 GPU")], ids=["cpu", "gpu"]
)
def test_a_size_bigger_than_the_host_is_refused_with_the_capacity(sized, tmp_path, size, needs):
    response = sized.client._http.post(
        "/tasks",
        json={"file_name": "a.py", "bundle_sha256": "0" * 64, "bundle_size": 1, "worker_config": {"worker_size": size}},
    )
    assert response.status_code == 422
    error = response.json()["error"]
    canonical = size.capitalize()
    assert error["field"] == "worker_config.worker_size"
    assert error["message"] == f"worker_size {canonical!r} needs {needs}; this host has {host()}"


def test_pools_get_the_same_checks_and_keep_the_canonical_name(sized):
    name = f"sized-{time.monotonic_ns()}"
    pool = taskyard.Pool.create(name, worker_config=WorkerConfig(worker_size="tiny"), client=sized.client)
    assert pool.info.worker_config.worker_size == "Tiny"
    with pytest.raises(InvalidInput, match="worker_size 'Huge' needs 10000 cpu"):
        taskyard.Pool.create(name + "-x", worker_config=WorkerConfig(worker_size="HUGE"), client=sized.client)
    with pytest.raises(InvalidInput, match="unknown worker_size 'nope'; valid sizes: Tiny, Small, Huge, Gpu"):
        taskyard.Pool.create(name + "-y", worker_config=WorkerConfig(worker_size="nope"), client=sized.client)
    pool.delete()
