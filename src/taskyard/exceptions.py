"""``taskyard.exceptions``: the error classes, where Practicus code imports them from.

``from practicuscore.exceptions import TaskError`` becomes ``from taskyard.exceptions import TaskError``.
These are the classes of :mod:`taskyard.errors` themselves (the same objects, not copies), so an
``except TaskError`` here catches what the SDK and the server raise, and every class is a
:class:`TaskyardError` with a stable ``code``.
"""

from __future__ import annotations

from taskyard.errors import (
    ConfigError,
    Conflict,
    Forbidden,
    IllegalTransition,
    InvalidInput,
    NotFound,
    ServerUnavailable,
    TaskError,
    TaskyardError,
    TimedOut,
    TooLarge,
    Unauthorized,
    Unsupported,
)

__all__ = [
    "ConfigError",
    "Conflict",
    "Forbidden",
    "IllegalTransition",
    "InvalidInput",
    "NotFound",
    "ServerUnavailable",
    "TaskError",
    "TaskyardError",
    "TimedOut",
    "TooLarge",
    "Unauthorized",
    "Unsupported",
]
