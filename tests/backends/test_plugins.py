"""Backends as plug-ins: configured by name, each pool on its own, a hung one stalling nobody else.

The ``hang`` type comes from the test plug-in in ``plugin/``, found through its entry point; it
stands for a remote backend that does not answer.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import taskyard
from taskyard.backends import registry
from taskyard.backends.settings import RaySettings
from taskyard.errors import ConfigError, Conflict, Forbidden
from taskyard.models import PoolSpec
from taskyard.server.advertise import agent_url
from taskyard.server.config import ENV_OVERRIDES, load_config
from taskyard.status import TaskStatus

from support import EXAMPLES, Server, wait_for, write

PLUGIN = Path(__file__).resolve().parent / "plugin"


@pytest.fixture
def plugin(monkeypatch) -> str:
    """The test plug-in on this process's path, and on its children's (PYTHONPATH, returned)."""
    for variable in (*ENV_OVERRIDES.values(), "TASKYARD_CONFIG"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.syspath_prepend(str(PLUGIN))
    path = os.pathsep.join([str(PLUGIN), *filter(None, [os.environ.get("PYTHONPATH")])])
    monkeypatch.setenv("PYTHONPATH", path)
    return path


def config_file(folder: Path, text: str) -> Path:
    return write(folder, "taskyard.toml", text)


# -- the configuration -------------------------------------------------------------------------------


def test_local_is_always_there_and_a_plugin_type_is_configured_by_name(plugin, tmp_path):
    config = load_config(config_file(tmp_path, '[backends.far]\ntype = "hang"\nhang_for = 5\ntimeout = 2\n'))
    assert list(config.backends) == ["local", "far"]
    assert (config.backends["far"].hang_for, config.backends["far"].timeout) == (5, 2)  # type: ignore[attr-defined]
    assert config.remote_backends() == ["far"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[backends.far]\ntype = "hang"\nhang_for = -1\n', "backends.far.hang_for: Input should be greater than 0"),
        ('[backends.far]\ntype = "hang"\nzone = "b"\n', "backends.far.zone: unknown key; the keys are: type, timeout"),
        ('[backends.local]\ntype = "hang"\n', 'backends.local: the backend called "local" is of type "local"'),
        ('backend = "far"\n', "backend: no backend 'far'; backends: local"),
    ],
)
def test_a_plugin_types_settings_are_checked_naming_the_key(plugin, tmp_path, text, message):
    with pytest.raises(ConfigError) as refused:
        load_config(config_file(tmp_path, text), data_dir=tmp_path)
    assert message in refused.value.message


def test_a_missing_extra_is_named_where_the_backend_is_made(plugin, tmp_path):
    if importlib.util.find_spec("ray") is not None:
        pytest.skip("ray is installed here")
    kind = registry.BUILTIN["ray"]
    context = registry.BackendContext("cluster", tmp_path)
    with pytest.raises(registry.MissingExtra, match=r"pip install 'taskyard\[ray\]'"):
        registry.make_backend(kind, RaySettings(address="ray://head:10001"), context)
    with pytest.raises(ImportError, match=r"pip install 'taskyard\[ray\]'"):
        importlib.import_module("taskyard.backends.ray")


# -- the advertised URL ---------------------------------------------------------------------------------


def test_agents_are_given_the_bind_address_and_loopback_for_a_wildcard(plugin, tmp_path):
    config = load_config(data_dir=tmp_path)
    assert agent_url(config, "127.0.0.1", 8642) == "http://127.0.0.1:8642"
    assert agent_url(config, "0.0.0.0", 8642) == "http://127.0.0.1:8642"  # local workers only: that reaches it
    assert agent_url(config, "::1", 8642) == "http://[::1]:8642"


def test_a_remote_backend_on_a_wildcard_address_needs_the_advertised_url(plugin, tmp_path, monkeypatch):
    remote = config_file(tmp_path, '[backends.far]\ntype = "hang"\n')
    with pytest.raises(ConfigError) as refused:
        agent_url(load_config(remote), "0.0.0.0", 8642)
    assert "advertise_url: backend 'far' (type hang) starts workers on other machines" in refused.value.message
    assert "--advertise-url or TASKYARD_ADVERTISE_URL" in refused.value.message
    assert agent_url(load_config(remote), "127.0.0.1", 8642) == "http://127.0.0.1:8642"
    monkeypatch.setenv("TASKYARD_ADVERTISE_URL", "http://taskyard.example.com:8642/")
    assert agent_url(load_config(remote), "0.0.0.0", 9000) == "http://taskyard.example.com:8642"


def test_taskyard_server_refuses_to_start_without_it_and_says_why(plugin, tmp_path):
    config_file(tmp_path, '[backends.far]\ntype = "hang"\n')
    command = [sys.executable, "-m", "taskyard", "server", "--config", "taskyard.toml", "--home", "home",
               "--host", "0.0.0.0", "--port", "0"]
    result = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: advertise_url: backend 'far' (type hang) starts workers on other machines")
    assert result.stdout == ""


# -- pools on their own backends ---------------------------------------------------------------------------

TWO_LOCALS = """
[backends.plain]
type = "local"
sandbox = "off"

[pools.plain]
backend = "plain"
max_workers = 2
"""

HUNG = """
[backends.stuck]
type = "hang"
timeout = 1

[pools.stuck]
backend = "stuck"
max_workers = 2
"""


@pytest.fixture
def served(plugin, tmp_path) -> Iterator[Server]:
    """A control plane whose configuration file is ``tmp_path/taskyard.toml``, written by the test first."""
    servers: list[Server] = []

    def start(text: str) -> Server:
        server = Server(tmp_path / "home", TASKYARD_CONFIG=str(config_file(tmp_path, text))).start()
        servers.append(server)
        return server

    yield start  # type: ignore[misc]
    for server in servers:
        server.stop()


def hello(client, pool: str = "default") -> taskyard.Task:
    return taskyard.submit("task_1.py", EXAMPLES, pool=pool, client=client)


def test_each_pool_runs_on_its_own_backend_with_that_backends_settings(served):
    server = served(TWO_LOCALS)
    client = server.client
    plain, default = hello(client, "plain"), hello(client)
    for task in (plain, default):
        assert task.wait(timeout=60) == TaskStatus.SUCCESS
    workers = {worker.pool: worker for worker in client.workers(include_ended=True)}
    assert (workers["plain"].backend, workers["plain"].sandboxed) == ("plain", False)  # its own sandbox = "off"
    assert workers["default"].backend == "local"
    listed = {pool.name: pool for pool in client.pools()}
    assert (listed["plain"].backend, listed["plain"].user, listed["plain"].max_workers) == ("plain", "config", 2)
    assert listed["plain"].backend_fault is None and listed["default"].backend_fault is None


def test_a_declared_pool_is_the_files_and_follows_it_across_restarts(served, tmp_path):
    server = served(TWO_LOCALS)
    with pytest.raises(Forbidden, match="declared in the server's configuration file"):
        server.client.delete_pool("plain")
    with pytest.raises(Conflict):
        server.client.create_pool(PoolSpec(name="plain"))
    server.client.create_pool(PoolSpec(name="mine", backend="plain"))
    with pytest.raises(taskyard.errors.InvalidInput, match="unknown backend 'nowhere'; backends: local, plain"):
        server.client.create_pool(PoolSpec(name="lost", backend="nowhere"))
    server.stop()
    server = served(TWO_LOCALS.replace("max_workers = 2", "max_workers = 3") + "[pools.mine]\nbackend = 'local'\n")
    listed = {pool.name: pool for pool in server.client.pools()}
    assert (listed["plain"].max_workers, listed["mine"].backend, listed["mine"].user) == (3, "local", "config")
    server.stop()
    server = served("")
    assert [pool.name for pool in server.client.pools()] == ["default"]


def test_a_hung_backend_stalls_only_its_own_pool_and_says_so(served):
    server = served(HUNG)
    client = server.client
    stuck = hello(client, "stuck")
    for _ in range(3):  # the default pool goes on as if nothing were wrong
        assert hello(client).wait(timeout=30) == TaskStatus.SUCCESS
    waiting = wait_for(lambda: (info := client.task(stuck.id)).reason and info)
    assert waiting.status == TaskStatus.IN_QUEUE.value
    assert "backend stuck did not start worker" in waiting.reason and "within 1 s" in waiting.reason
    pools = {pool.name: pool for pool in client.pools()}
    assert "not answering: the start of worker" in pools["stuck"].backend_fault
    assert pools["default"].backend_fault is None
    assert hello(client).wait(timeout=30) == TaskStatus.SUCCESS  # and still does
    assert client.task(stuck.id).status == TaskStatus.IN_QUEUE.value  # nothing more was started on it
    client.kill(stuck.id)
    assert client.wait(stuck.id, timeout=10).status == TaskStatus.KILLED.value


def test_pools_list_shows_each_pools_backend_and_what_is_wrong_with_it(served, monkeypatch):
    from typer.testing import CliRunner

    from taskyard.cli import app

    from support import default_client_of

    server = served(HUNG)
    stuck = hello(server.client, "stuck")
    wait_for(lambda: server.client.pool("stuck").backend_fault)
    config = taskyard.WorkerConfig(worker_image="practicus")  # an image of the local backend, not of this one
    with pytest.raises(taskyard.errors.InvalidInput, match="practicus"):
        taskyard.submit("task_1.py", EXAMPLES, pool="stuck", worker_config=config, client=server.client)
    with default_client_of(server, monkeypatch):
        listed = CliRunner().invoke(app, ["pools", "list"], terminal_width=300)
    assert listed.exit_code == 0, listed.output
    assert "BACKEND STATUS" in listed.stdout
    rows = {line.split()[0]: line for line in listed.stdout.splitlines() if line.strip()}
    assert "stuck" in rows["stuck"] and "not answering" in rows["stuck"]
    assert " ok" in rows["default"]
    server.client.kill(stuck.id)


# -- the contract suite -------------------------------------------------------------------------------------

#: the module that runs the contract suite (contract.BackendContract) against each built-in backend type
CONTRACT_SUITES = {"local": "test_local", "ray": "ray_cluster_tests", "kubernetes": "test_kubernetes"}


@pytest.mark.parametrize("type_name", list(registry.BUILTIN))
def test_the_contract_suite_runs_against_every_backend_type_that_can_run_here(type_name):
    from contract import BackendContract

    try:
        registry.check_installed(registry.BUILTIN[type_name])
    except registry.MissingExtra as exc:
        pytest.skip(str(exc))
    module = importlib.import_module(CONTRACT_SUITES[type_name])
    classes = [value for value in vars(module).values() if isinstance(value, type)]
    suites = [suite for suite in classes if issubclass(suite, BackendContract) and suite is not BackendContract]
    assert suites, f"no contract suite for type {type_name!r}"
