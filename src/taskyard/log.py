"""Behind ``taskyard.logger``: the ``logging.Logger`` that tasks (and SDK users) write to, as ``prt.logger``.

It is the logger named ``taskyard``, set up the first time ``taskyard.logger`` is read: one handler
writing ``time level message`` lines to stderr (so inside a task, into the task's log), and
``propagate`` off so nothing is printed twice. Importing ``taskyard`` sets up nothing, and the
root logger is left alone unless ``TASKYARD_MODULES_LOG_LEVEL`` is set.

Inside a task its level comes from the worker config's ``log_level`` (through
``TASKYARD_LOG_LEVEL``, default INFO); ``modules_log_level`` (``TASKYARD_MODULES_LOG_LEVEL``),
when given, sets the root logger's level, which the loggers of other modules inherit. (This module
is not named ``logger``: ``taskyard.logger`` is the Logger itself.)
"""

from __future__ import annotations

import logging
import os
import sys

NAME = "taskyard"
LEVEL_ENV = "TASKYARD_LOG_LEVEL"
MODULES_LEVEL_ENV = "TASKYARD_MODULES_LOG_LEVEL"
FORMAT = "%(asctime)s %(levelname)s %(message)s"
LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def level_name(value: str) -> str:
    """The standard level name for ``value`` (any case; WARN means WARNING); ValueError otherwise."""
    name = value.strip().upper()
    name = "WARNING" if name == "WARN" else name
    if name not in LEVELS:
        raise ValueError(f"log level {value!r} is not one of {', '.join(LEVELS)}")
    return name


def _level_from_env(variable: str, default: str) -> str:
    """The level named by ``variable``, or ``default`` if it is unset or not a level name."""
    try:
        return level_name(os.environ.get(variable) or default)
    except ValueError:
        return default


def get_logger() -> logging.Logger:
    """The ``taskyard`` logger, with its stderr handler added once (idempotent)."""
    logger = logging.getLogger(NAME)
    if not any(getattr(handler, "_taskyard", False) for handler in logger.handlers):
        logger.addHandler(_handler())
        logger.setLevel(_level_from_env(LEVEL_ENV, "INFO"))
        logger.propagate = False
        _apply_modules_level()
    return logger


def _handler() -> logging.Handler:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    handler._taskyard = True  # type: ignore[attr-defined]  # marks the one handler this module adds
    return handler


def _apply_modules_level() -> None:
    """Set the root logger's level from ``TASKYARD_MODULES_LOG_LEVEL``, only when it is set."""
    if os.environ.get(MODULES_LEVEL_ENV):
        logging.getLogger().setLevel(_level_from_env(MODULES_LEVEL_ENV, "WARNING"))
