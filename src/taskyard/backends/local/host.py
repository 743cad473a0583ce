"""What this host holds: cores, memory and GPUs, as the local backend's workers may use them."""

from __future__ import annotations

import os

from taskyard.backends.base import Resources


def host_capacity(gpus: tuple[str, ...] | None = None) -> Resources:
    """This host's cores, memory and GPUs; ``gpus`` overrides what is found (``TASKYARD_GPUS``)."""
    cores = float(len(os.sched_getaffinity(0)))
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return Resources(cpu=cores, memory=memory, gpus=tuple(gpus or ()))
