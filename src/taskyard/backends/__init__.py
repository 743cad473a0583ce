"""Backends: where workers start. Each optional backend sits behind its install extra."""

from __future__ import annotations

from pathlib import Path

from taskyard.backends.base import Backend, LaunchRequest, WorkerState


def make_backend(name: str, data_dir: Path) -> Backend:
    if name == "local":
        from taskyard.backends.local import LocalBackend

        return LocalBackend(data_dir / "workers")
    raise ValueError(f"unknown backend {name!r}; available: local")


__all__ = ["Backend", "LaunchRequest", "WorkerState", "make_backend"]
