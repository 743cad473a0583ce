"""Worker sizes against what the backend holds: the catalog users see, and the check at submit."""

from __future__ import annotations

from collections.abc import Mapping

from taskyard.backends.base import Resources
from taskyard.errors import InvalidInput
from taskyard.models import CapacityInfo, SizeCatalog, SizeInfo
from taskyard.server.config import Size, default_size_name, find_size, memory_text

FIELD = "worker_config.worker_size"


def catalog(sizes: Mapping[str, Size], capacity: Resources | None) -> SizeCatalog:
    """Every size in the config's order, each saying whether ``capacity`` (None: no bound) holds it."""
    default = default_size_name(sizes)
    infos = [_info(name, size, name == default, capacity) for name, size in sizes.items()]
    return SizeCatalog(sizes=infos, capacity=None if capacity is None else _capacity_info(capacity))


def check(sizes: Mapping[str, Size], capacity: Resources | None, name: str) -> str:
    """The canonical name of size ``name``; InvalidInput if there is none, or if it can never fit."""
    canonical, size = find_size(sizes, name)
    why = shortfall(size, capacity)
    if why is not None:
        raise InvalidInput(f"worker_size {canonical!r} {why}", field=FIELD)
    return canonical


def shortfall(size: Size, capacity: Resources | None) -> str | None:
    """None when ``capacity`` holds ``size``; else ``"needs ...; this host has ..."``."""
    if capacity is None or fits(size, capacity):
        return None
    return f"needs {size.needs()}; this host has {capacity_text(capacity)}"


def fits(size: Size, capacity: Resources) -> bool:
    return size.cpu <= capacity.cpu and size.memory <= capacity.memory and size.gpu <= len(capacity.gpus)


def capacity_text(capacity: Resources) -> str:
    """``"2 cpu, 23.5 GiB, 0 GPUs"``."""
    gpus = len(capacity.gpus)
    return f"{capacity.cpu:g} cpu, {memory_text(capacity.memory)}, {gpus} GPU{'' if gpus == 1 else 's'}"


def _info(name: str, size: Size, default: bool, capacity: Resources | None) -> SizeInfo:
    why = shortfall(size, capacity)
    return SizeInfo(
        name=name,
        cpu=size.cpu,
        memory=size.memory,
        memory_text=memory_text(size.memory),
        gpu=size.gpu,
        default=default,
        fits=why is None,
        why=why,
    )


def _capacity_info(capacity: Resources) -> CapacityInfo:
    return CapacityInfo(
        cpu=capacity.cpu,
        memory=capacity.memory,
        memory_text=memory_text(capacity.memory),
        gpus=list(capacity.gpus),
        text=capacity_text(capacity),
    )
