"""The Ray backend: workers started on a Ray cluster. It needs Ray: ``pip install 'taskyard[ray]'``.

Its settings (``[backends.NAME]`` with ``type = "ray"``) are
:class:`taskyard.backends.settings.RaySettings`; they are checked at start even without Ray.
How a worker runs there: :mod:`taskyard.backends.ray.backend`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

try:
    import ray  # noqa: F401
except ImportError as exc:
    raise ImportError("the ray backend needs the ray package: pip install 'taskyard[ray]'", name="ray") from exc

from taskyard.backends.ray.backend import RayBackend

if TYPE_CHECKING:
    from taskyard.backends.registry import BackendContext
    from taskyard.backends.settings import RaySettings


def from_settings(settings: RaySettings, context: BackendContext) -> RayBackend:
    """A Ray backend; it joins its cluster when first used, not here."""
    return RayBackend(settings)


__all__ = ["RayBackend", "from_settings"]
