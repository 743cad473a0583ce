"""The Ray backend's settings and what it makes of the cluster's nodes: no cluster needed (the rest is ``-m ray``)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from taskyard.backends.base import Resources
from taskyard.backends.settings import RaySettings
from taskyard.errors import ConfigError
from taskyard.server.config import load_config

from support import write

pytest.importorskip("ray")

from taskyard.backends.ray.backend import RayBackend, placement_capacity  # noqa: E402

GiB = 1 << 30


def _readme_ray_example() -> str:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    [example] = [block.split("```", 1)[0] for block in readme.split("```toml\n")[1:] if "[backends.ray-gpu]" in block]
    return example


def test_the_readme_ray_example_is_a_valid_config(tmp_path):
    config = load_config(write(tmp_path, "taskyard.toml", _readme_ray_example()), data_dir=tmp_path)
    gpu = config.backends["ray-gpu"]
    assert isinstance(gpu, RaySettings) and gpu.resources == {"a100": 1} and gpu.label_selector == {"zone": "eu-1"}
    assert gpu.images["cuda"].runtime_env == {"image_uri": "registry.example.com/cuda:12"}
    assert config.backend == "ray" and config.pools["training"].backend == "ray-gpu"
    assert set(RayBackend(gpu).images) == {"python", "cuda"}


@pytest.mark.parametrize(
    "table, key",
    [
        ('type = "ray"\n', "address"),
        ('type = "ray"\naddress = "h:6379"\nresources = { CPU = 2 }\n', "resources"),
        ('type = "ray"\naddress = "h:6379"\nresources = { side = -1 }\n', "resources"),
        ('type = "ray"\naddress = "h:6379"\nplacement = "spread"\n', "placement"),
        ('type = "ray"\naddress = "h:6379"\nimages.x = { runtime_env = {} }\n', "description"),
    ],
)
def test_a_bad_ray_table_is_refused_naming_the_key(tmp_path, table, key):
    path = write(tmp_path, "taskyard.toml", f"advertise_url = 'http://10.0.0.5:8000'\n[backends.r]\n{table}")
    with pytest.raises(ConfigError, match=key):
        load_config(path, data_dir=tmp_path)


def test_without_ray_installed_the_config_says_which_extra_to_install(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *rest: None if name == "ray" else real(name, *rest))
    path = write(tmp_path, "taskyard.toml", "[backends.r]\ntype = 'ray'\naddress = 'ray://head:10001'\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path, data_dir=tmp_path)
    assert refused.value.message.startswith(
        f"{path}: backends.r.type: type \"ray\" needs the ray package, which is not installed: "
        "pip install 'taskyard[ray]'"
    )


def _node(cpu: float, memory: int, alive: bool = True, gpus: int = 0, labels=None, **custom: float) -> dict:
    resources = {"CPU": cpu, "memory": memory, "GPU": gpus, **custom}
    return {"Alive": alive, "Resources": resources, "Labels": labels or {}}


def test_capacity_is_what_the_live_nodes_that_match_the_placement_hold():
    nodes = [_node(8, 32 * GiB, gpus=1, labels={"zone": "a"}, a100=1), _node(4, 16 * GiB, labels={"zone": "b"}),
             _node(64, 256 * GiB, alive=False, a100=8)]
    anywhere = RaySettings(address="h:6379")
    assert placement_capacity(nodes, anywhere) == Resources(cpu=12, memory=48 * GiB, gpus=("0",))
    steered = RaySettings(address="h:6379", resources={"a100": 1})
    assert placement_capacity(nodes, steered) == Resources(cpu=8, memory=32 * GiB, gpus=("0",))
    assert placement_capacity(nodes, RaySettings(address="h:6379", label_selector={"zone": "b"})).cpu == 4
    assert placement_capacity(nodes, RaySettings(address="h:6379", label_selector={"zone": "c"})) is None
