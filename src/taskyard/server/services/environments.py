"""Python environments at submit: a task asks for one its workers can give it, or it is refused at once."""

from __future__ import annotations

from collections.abc import Mapping

from taskyard.config import WorkerConfig
from taskyard.errors import InvalidInput
from taskyard.models import TaskSpec


def check(spec: TaskSpec, config: WorkerConfig, venvs: Mapping[str, str] | None) -> None:
    """Refuse a task that names a virtual environment its backend does not have, or asks for two environments.

    ``config`` is the task's worker config on top of its pool's; ``venvs`` what the backend has
    (:meth:`Backend.python_venvs`; None: it cannot tell, and the name is not checked).
    """
    name = spec.python_venv_name
    if name is None:
        return
    if config.python_requirements is not None:
        raise InvalidInput(
            "python_venv_name and python_requirements both name the task's Python environment; give one",
            field="python_venv_name",
        )
    if venvs is not None and name not in venvs:
        raise InvalidInput(unknown_venv(name, venvs), field="python_venv_name")


def unknown_venv(name: str, venvs: Mapping[str, str]) -> str:
    if not venvs:
        return (f"no Python virtual environment {name!r}: this server's workers have none; make one with"
                f" `python -m venv ~/.venv/{name}` as the user the server runs as (or in TASKYARD_VENVS_DIR)")
    return f"no Python virtual environment {name!r}; there are: {', '.join(sorted(venvs))}"
