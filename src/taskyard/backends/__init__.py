"""Backends: where workers start. Each optional backend sits behind its install extra.

The types there are, and how each is made, are in :mod:`taskyard.backends.registry`.
"""

from __future__ import annotations

from pathlib import Path

from taskyard.backends.base import Backend, BackendWithProvisioning, LaunchRequest, Provisioning, WorkerState


def make_backend(name: str, data_dir: Path, *, sandbox: str = "auto", gpus: tuple[str, ...] | None = None) -> Backend:
    """A backend of the type called ``name`` with its default settings, keeping its files under ``data_dir``.

    ``sandbox`` (auto, required, off) and ``gpus`` (None: found on the host) are the server
    config's; a backend they mean nothing to ignores them.
    """
    from taskyard.backends import registry

    types = registry.backend_types()
    if name not in types:
        raise ValueError(f"unknown backend {name!r}; available: {', '.join(types)}")
    kind = types[name]
    context = registry.BackendContext(name, data_dir, sandbox=sandbox, gpus=gpus)
    return registry.make_backend(kind, kind.settings(type=name), context)


__all__ = ["Backend", "BackendWithProvisioning", "LaunchRequest", "Provisioning", "WorkerState", "make_backend"]
