"""The kinds of task, in one table: which file suffix makes which kind, and how the agent runs it.

Standard library only, like the rest of the agent: the API's schemas (``taskyard.models``), the
control plane (``services/agent.py``), flows and the agent's runner all read this table.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath


@dataclass(frozen=True)
class TaskKind:
    name: str  # what the agent is told to run (``Assignment.kind``)
    suffix: str  # the task file's suffix that makes it this kind
    title: str  # for people: "python", "shell", "notebook"
    command: Callable[[str], list[str]]  # the argv that runs a task file of this kind


KINDS: dict[str, TaskKind] = {
    kind.suffix: kind
    for kind in (
        TaskKind("py", ".py", "python", lambda f: [sys.executable, "-u", f]),
        TaskKind("sh", ".sh", "shell", lambda f: ["bash", f]),
        # papermill, in the task's own Python
        TaskKind("ipynb", ".ipynb", "notebook", lambda f: [sys.executable, "-u", "-m", "taskyard.notebook_task", f]),
    )
}
NOTEBOOK = KINDS[".ipynb"]
SUFFIXES = tuple(KINDS)  # the task file suffixes there are: ".py", ".sh", ".ipynb"


def kind_of(file_name: str, *, as_notebook: bool = False) -> TaskKind | None:
    """The kind of a task file (a notebook when ``as_notebook``); None when its suffix is none of ours."""
    return NOTEBOOK if as_notebook else KINDS.get(PurePosixPath(file_name).suffix)


def command(kind_name: str, file_name: str) -> list[str]:
    """The argv that runs ``file_name`` as the kind called ``kind_name``; KeyError for a kind there is not."""
    by_name = {kind.name: kind for kind in KINDS.values()}
    return by_name[kind_name].command(file_name)
