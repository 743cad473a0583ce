"""A workflow's folder: its task files, and each task's worker config from the JSON files beside them.

Each task's config is, key by key (``env_variables`` by variable name), from lowest to highest:
``default_worker.json`` < ``<task>_worker.json`` (both read by :func:`taskyard.config.worker_config_beside`)
< ``default_worker_config`` < its entry in ``custom_worker_configs``: what is given in code wins over files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from taskyard.config import WorkerConfig, merge_worker_configs, worker_config_beside
from taskyard.errors import InvalidInput
from taskyard.workflows import dag

#: Practicus gives per-task configs as ``[(task_name, WorkerConfig), ...]``; a dict reads the same
CustomConfigs = Iterable[tuple[str, WorkerConfig]] | Mapping[str, WorkerConfig] | None


def task_files(folder: Path, graph: dag.Dag) -> dict[str, str]:
    """Each task of ``graph`` to its file at the top of ``folder``."""
    if not folder.is_dir():
        raise InvalidInput(f"files_path {str(folder)!r} is not a folder", field="files_path")
    return dag.task_files(graph, (entry.name for entry in folder.iterdir() if entry.is_file()))


def worker_configs(
    folder: Path, files: Mapping[str, str], default: WorkerConfig | None = None, custom: CustomConfigs = None
) -> dict[str, WorkerConfig]:
    """Each task's merged worker config (see the module's docstring)."""
    given = _custom(custom, files)
    return {
        name: merge_worker_configs(worker_config_beside(folder, file_name), default, given.get(name))
        for name, file_name in files.items()
    }


def _custom(custom: CustomConfigs, files: Mapping[str, str]) -> dict[str, WorkerConfig]:
    pairs = dict(custom.items() if isinstance(custom, Mapping) else custom or ())
    unknown = sorted(set(pairs) - set(files))
    if unknown:
        raise InvalidInput(f"custom_worker_configs names tasks not in the flow: {', '.join(unknown)}",
                           field="custom_worker_configs")
    return pairs
