"""Backends: where workers start. Each optional backend sits behind its install extra."""

from __future__ import annotations

from pathlib import Path

from taskyard.backends.base import Backend, LaunchRequest, WorkerState


def make_backend(name: str, data_dir: Path, *, sandbox: str = "auto", gpus: tuple[str, ...] | None = None) -> Backend:
    """The backend called ``name``, keeping its files under ``data_dir``.

    ``sandbox`` (auto, required, off) and ``gpus`` (None: found on the host) are the server
    config's; a backend they mean nothing to ignores them.
    """
    if name == "local":
        from taskyard.backends.local import LocalBackend

        return LocalBackend(data_dir / "workers", sandbox=sandbox, gpus=gpus)
    raise ValueError(f"unknown backend {name!r}; available: local")


__all__ = ["Backend", "LaunchRequest", "WorkerState", "make_backend"]
