from __future__ import annotations

from typing import TYPE_CHECKING

from taskyard.backends.local.backend import LocalBackend

if TYPE_CHECKING:
    from taskyard.backends.registry import BackendContext
    from taskyard.backends.settings import LocalSettings


def from_settings(settings: LocalSettings, context: BackendContext) -> LocalBackend:
    """A local backend; what its settings leave out (sandbox, GPUs) is the server's."""
    sandbox = settings.sandbox or context.sandbox
    gpus = settings.gpus if settings.gpus is not None else context.gpus
    return LocalBackend(context.data_dir / "workers", sandbox=sandbox, gpus=gpus)


__all__ = ["LocalBackend", "from_settings"]
