"""taskyard: run script tasks on isolated, on-demand workers.

    import taskyard
    worker, success = taskyard.run_task(file_name="task_1.py")

Names are imported when first used, so ``import taskyard`` (and the agent inside a worker)
starts fast.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing itself is not imported: the agent imports this package too

__version__ = "0.1.0"

_EXPORTS = {
    "run_task": "taskyard.sdk",
    "submit": "taskyard.sdk",
    "submit_many": "taskyard.batch",
    "Task": "taskyard.sdk",
    "Worker": "taskyard.sdk",
    "Pool": "taskyard.sdk",
    "worker_sizes": "taskyard.sdk",
    "create_worker": "taskyard.regions",
    "get_or_create_worker": "taskyard.regions",
    "get_region": "taskyard.regions",
    "WorkerConfig": "taskyard.config",
    "GitConfig": "taskyard.config",
    "TaskStatus": "taskyard.status",
    "WorkerStatus": "taskyard.status",
    "TaskyardError": "taskyard.errors",
    "TaskError": "taskyard.errors",
}
# Modules of the Practicus and Inductiva names: ``taskyard.vault.get_secret(...)``,
# ``taskyard.notebooks.execute_notebook(...)``.
_MODULES = ("vault", "exceptions", "tasks", "notebooks", "workflows", "regions")

__all__ = [*_EXPORTS, *_MODULES, "logger", "__version__"]

if TYPE_CHECKING:
    import logging

    from taskyard import exceptions, notebooks, regions, tasks, vault, workflows
    from taskyard.batch import submit_many
    from taskyard.config import GitConfig, WorkerConfig
    from taskyard.errors import TaskError, TaskyardError
    from taskyard.regions import create_worker, get_or_create_worker, get_region
    from taskyard.sdk import Pool, Task, Worker, run_task, submit, worker_sizes
    from taskyard.status import TaskStatus, WorkerStatus

    logger: logging.Logger


def __getattr__(name: str) -> object:
    import importlib

    if name == "logger":  # the Logger, set up on first use (see taskyard.log)
        value = importlib.import_module("taskyard.log").get_logger()
        globals()[name] = value
        return value
    if name in _MODULES:
        return importlib.import_module(f"taskyard.{name}")  # the import sets it as an attribute too
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'taskyard' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
