"""The Ray backend: workers started on a Ray cluster. It needs Ray: ``pip install 'taskyard[ray]'``.

Its settings (``[backends.NAME]`` with ``type = "ray"``) are
:class:`taskyard.backends.settings.RaySettings`; they are checked at start even without Ray.
"""

try:
    import ray  # noqa: F401
except ImportError as exc:
    raise ImportError("the ray backend needs the ray package: pip install 'taskyard[ray]'", name="ray") from exc
