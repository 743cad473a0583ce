"""Admission by size: a worker starts only where what it needs fits what its backend has left.

Cores and memory are held by busy workers (those with a task, starting or running): an idle warm
worker holds none, and takes its share only once it is given a task. GPU devices are held by every
live worker that was given some, from its launch until it has ended, and no two hold the same one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from taskyard.backends.base import Resources
from taskyard.server.db.models import WorkerRow
from taskyard.server.services.workers import is_busy

SLACK = 1e-9  # fractional cores add up with rounding errors


@dataclass(frozen=True)
class Need:
    """What one worker of a size asks for."""

    cpu: float
    memory: int
    gpu: int = 0


class Ledger:
    """What a backend's live workers hold during one scheduler pass, and what is left of its capacity."""

    def __init__(self, capacity: Resources | None, live: list[WorkerRow], need_of: Callable[[str], Need]) -> None:
        self.capacity = capacity
        busy = [need_of(worker.size) for worker in live if is_busy(worker)]
        self.cpu = sum(need.cpu for need in busy)
        self.memory = sum(need.memory for need in busy)
        self.gpus = {device for worker in live for device in devices(worker)}

    def reserve(self, need: Need, *, compute: bool = True, gpus: bool = True) -> tuple[str, ...] | None:
        """Hold ``need`` (its cores and memory, its GPUs, or both) for a worker about to start or take a task.

        Returns the GPU devices it gets (none when ``gpus`` is False), or None when it does not fit now.
        """
        if self.capacity is None:
            return ()
        if compute and not self._fits(need):
            return None
        free = [device for device in self.capacity.gpus if device not in self.gpus]
        wanted = need.gpu if gpus else 0
        if len(free) < wanted:
            return None
        if compute:
            self.cpu += need.cpu
            self.memory += need.memory
        self.gpus.update(free[:wanted])
        return tuple(free[:wanted])

    def _fits(self, need: Need) -> bool:
        assert self.capacity is not None
        return self.cpu + need.cpu <= self.capacity.cpu + SLACK and self.memory + need.memory <= self.capacity.memory


def devices(worker: WorkerRow) -> list[str]:
    return [device for device in (worker.gpus or "").split(",") if device]
