"""The backend types there are: a plain table of the built-in ones, and those plug-ins add.

A plug-in is a distribution with an entry point in the ``taskyard.backends`` group whose object
is a :class:`BackendType`::

    [project.entry-points."taskyard.backends"]
    mycloud = "taskyard_mycloud:BACKEND_TYPE"

A type names the modules it needs (``requires``) and the install extra that brings them, so a
configuration asking for it on a machine without them says what to install, before anything
starts.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from taskyard.backends.base import Backend
from taskyard.backends.settings import BackendSettings, KubernetesSettings, LocalSettings, RaySettings

ENTRY_POINTS = "taskyard.backends"


@dataclass(frozen=True)
class BackendContext:
    """What a backend is made with besides its own settings."""

    name: str  # the backend's name in the configuration (``[backends.NAME]``)
    data_dir: Path  # the control plane's folder; a backend keeps its files under it
    sandbox: str = "auto"  # the server's ``sandbox``
    gpus: tuple[str, ...] | None = None  # the server's ``gpus``


@dataclass(frozen=True)
class BackendType:
    name: str  # what ``type =`` says
    settings: type[BackendSettings]
    factory: str  # "module:callable", called with (settings, BackendContext), returning a Backend
    remote: bool = True  # its workers run on other machines (they need the control plane's advertised URL)
    requires: tuple[str, ...] = ()  # top-level modules it imports
    extra: str | None = None  # the install extra that brings them: pip install 'taskyard[EXTRA]'


class MissingExtra(ImportError):
    """A backend type whose modules are not installed; the message says which extra brings them."""

    def __init__(self, kind: BackendType, module: str) -> None:
        hint = f"pip install 'taskyard[{kind.extra}]'" if kind.extra else f"install {module}"
        super().__init__(f'type "{kind.name}" needs the {module} package, which is not installed: {hint}')


BUILTIN: dict[str, BackendType] = {
    kind.name: kind
    for kind in (
        BackendType("local", LocalSettings, "taskyard.backends.local:from_settings", remote=False),
        BackendType("ray", RaySettings, "taskyard.backends.ray:from_settings", requires=("ray",), extra="ray"),
        BackendType(
            "kubernetes", KubernetesSettings, "taskyard.backends.kubernetes:from_settings",
            requires=("kubernetes",), extra="kubernetes",
        ),
    )
}


def backend_types() -> dict[str, BackendType]:
    """The built-in types, then those of installed plug-ins (a plug-in cannot replace a built-in one)."""
    found = {point.name: point for point in entry_points(group=ENTRY_POINTS) if point.name not in BUILTIN}
    return BUILTIN | {name: _plugged(point) for name, point in found.items()}


def _plugged(point: Any) -> BackendType:
    kind = point.load()
    if not isinstance(kind, BackendType) or kind.name != point.name:
        raise TypeError(f"entry point {point.value!r} of {ENTRY_POINTS} is not the BackendType {point.name!r}")
    return kind


def check_installed(kind: BackendType) -> None:
    """Raise :class:`MissingExtra` when a module the type needs is not installed."""
    for module in kind.requires:
        if importlib.util.find_spec(module) is None:
            raise MissingExtra(kind, module)


def make_backend(kind: BackendType, settings: BackendSettings, context: BackendContext) -> Backend:
    """A backend of type ``kind``, named ``context.name``. MissingExtra when its modules are not installed."""
    check_installed(kind)
    backend = _factory(kind)(settings, context)
    backend.name = context.name
    return backend


def _factory(kind: BackendType) -> Callable[[BackendSettings, BackendContext], Backend]:
    module_name, _, attribute = kind.factory.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        if exc.name and exc.name.split(".")[0] in kind.requires:
            raise MissingExtra(kind, exc.name.split(".")[0]) from None
        if exc.name != module_name:
            raise
        module = None
    factory = getattr(module, attribute, None) if module is not None else None
    if factory is None:
        raise NotImplementedError(f'the backend of type "{kind.name}" is not part of this version of taskyard yet')
    return factory
