"""Flows deployed to Apache Airflow 3: generated DAG folders, and the helpers their DAG files call.

``generate_files(...)`` writes a DAG folder in the shape Practicus AI deploys: ``<dag_key>_dag.py``,
the task files, ``default_worker.json`` and ``<task>_worker.json``. In Airflow, each task calls
:func:`run_airflow_task`, which runs ``<task_id>.py|.sh|.ipynb`` beside the DAG file on taskyard.
The taskyard server is the Airflow connection ``taskyard_default`` (host, port, and the token as
its password; or ``{"url": ...}`` in its extra), else ``TASKYARD_URL`` / ``TASKYARD_TOKEN``.
Airflow is imported only inside the functions that run in Airflow.
"""

from __future__ import annotations

import getpass
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from taskyard.client import Client, default_client
from taskyard.config import WorkerConfig, merge_worker_configs, worker_config_beside
from taskyard.errors import InvalidInput, TaskError
from taskyard.workflows import dag, folder
from taskyard.workflows.template import render

CONNECTION_ID = "taskyard_default"
DAG_INFO = "dag_info.json"  # beside the DAG file: its dag_key and the username that namespaces its dag_id
#: DAG-run params that override the worker config of every task of the run
PARAMS = ("worker_image", "worker_size", "env_variables", "startup_script", "log_level")
_UNSET = (None, "", "None")
_ID_PART = re.compile(r"[^A-Za-z0-9_-]")
log = logging.getLogger("airflow.task")


# -- in the DAG file ---------------------------------------------------------------------------------


def get_dag_info(dag_file_path: str) -> tuple[str, str]:
    """``(dag_key, username)`` of a DAG file ``<dag_key>_dag.py``; its dag_id is ``<dag_key>.<username>``.

    Both come from the ``dag_info.json`` written beside it, else from the file's name and the
    user running it. Also lets DAGs written for Airflow 2 give ``schedule_interval`` (see
    :func:`accept_schedule_interval`).
    """
    accept_schedule_interval()
    path = Path(dag_file_path)
    info = _read_json(path.with_name(DAG_INFO))
    dag_key = info.get("dag_key") or path.stem.removesuffix("_dag")
    username = info.get("username") or getpass.getuser()
    return _ID_PART.sub("_", dag_key), _ID_PART.sub("_", username)


def get_airflow_params() -> dict[str, Any]:
    """The DAG's params: worker settings a DAG run may give to override every task's config."""
    return {"worker_image": "", "worker_size": "", "env_variables": {}}


def accept_schedule_interval() -> None:
    """Make Airflow 3's DAG take Airflow 2's ``schedule_interval=`` as ``schedule=`` (once; no-op elsewhere).

    Practicus AI's DAG files, such as its ``run_task_safe_dag.py``, were written for Airflow 2.
    """
    try:
        from airflow.sdk import DAG
    except ImportError:
        return
    if getattr(DAG.__init__, "_taskyard_schedule_interval", False):
        return
    original = DAG.__init__

    def __init__(self, *args, schedule_interval=None, **kwargs):  # noqa: N807
        if schedule_interval is not None and "schedule" not in kwargs:
            kwargs["schedule"] = schedule_interval
        original(self, *args, **kwargs)

    __init__._taskyard_schedule_interval = True  # type: ignore[attr-defined]
    DAG.__init__ = __init__  # type: ignore[method-assign]


def run_airflow_task(**kwargs: Any) -> str:
    """Run the Airflow task's file on taskyard; raise :class:`TaskError` unless it ends Success.

    The file is ``<task_id>.py``, ``.sh`` or ``.ipynb`` beside the DAG file; its worker config is
    ``default_worker.json`` < ``<task_id>_worker.json`` < the DAG run's params. The DAG's folder is
    uploaded with it, and the outputs of its upstream Airflow tasks (run this way) are under
    ``inputs/<upstream>/``. Its output goes to the Airflow task log. Returns the taskyard task id
    (the Airflow task's XCom, which is how a downstream task finds its inputs).
    """
    from taskyard.sdk import submit

    dag_folder, name = Path(kwargs["dag"].folder), kwargs["ti"].task_id
    file_name = task_file(dag_folder, name)
    config = merge_worker_configs(worker_config_beside(dag_folder, file_name), params_config(kwargs.get("params")))
    client = airflow_client()
    upstream = {up: kwargs["ti"].xcom_pull(task_ids=up) for up in sorted(kwargs["task"].upstream_task_ids)}
    with staged(dag_folder, upstream, client) as files:
        task = submit(file_name, files, config, client=client)
        log.info("taskyard task %s runs %s", task.id, file_name)
        _log_lines(task.stream_logs())
    info = task.refresh()
    if info.status.value != "success":
        raise TaskError(f"taskyard task {task.id} ({file_name}) ended {info.alias}: {info.reason or 'no reason given'}")
    return task.id


def _log_lines(chunks: Iterator[tuple[str, str]]) -> None:
    """Each whole line the task prints as one record of the Airflow task log (chunks may cut lines)."""
    partial: dict[str, str] = {}
    for stream, text in chunks:
        *lines, partial[stream] = (partial.get(stream, "") + text).split("\n")
        for line in lines:
            log.info("%s", line)
    for rest in partial.values():
        if rest:
            log.info("%s", rest)


def task_file(dag_folder: Path, name: str) -> str:
    """The one task file ``<name>.py|.sh|.ipynb`` in ``dag_folder``."""
    files = (entry.name for entry in dag_folder.iterdir() if entry.is_file())
    return dag.task_files(dag.parse(name), files)[name]


def params_config(params: Mapping[str, Any] | None) -> WorkerConfig:
    """The worker settings a DAG run gives in its params (empty ones left out)."""
    given = {key: value for key, value in (params or {}).items() if key in PARAMS and value not in _UNSET}
    return WorkerConfig.model_validate({key: value for key, value in given.items() if value != {}})


def airflow_client() -> Client:
    """The taskyard server of the Airflow connection ``taskyard_default``, else of ``TASKYARD_URL``."""
    try:
        from airflow.sdk import BaseHook

        connection = BaseHook.get_connection(CONNECTION_ID)
    except Exception:  # no Airflow here, or no such connection: the environment says
        return default_client()
    extra = connection.extra_dejson or {}
    scheme = "https" if connection.conn_type == "https" else "http"
    url = extra.get("url") or f"{scheme}://{connection.host}:{connection.port}"
    return Client(url, connection.password or "")


@contextmanager
def staged(dag_folder: Path, upstream: Mapping[str, Any], client: Client) -> Iterator[Path]:
    """A copy of ``dag_folder`` with each upstream taskyard task's outputs under ``inputs/<name>/``."""
    from taskyard.sdk import Task

    with tempfile.TemporaryDirectory(prefix="taskyard-airflow-") as scratch:
        files = Path(scratch) / "files"
        shutil.copytree(dag_folder, files, ignore=shutil.ignore_patterns("__pycache__"))
        for name, task_id in upstream.items():
            if isinstance(task_id, str):
                task = Task(task_id, client=client)
                if task.info.outputs is not None:
                    task.download_outputs(output_dir=files / "inputs" / name)
        yield files


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {}


# -- generating DAG folders ----------------------------------------------------------------------------


class DagFilesExist(FileExistsError):
    """generate_files would replace files already in the DAG folder."""

    def __init__(self, names: list[str], folder: Path) -> None:
        self.names, self.folder = names, folder
        super().__init__(f"{', '.join(names)} already in {folder}; overwrite_existing=True replaces them")


def generate_files(
    dag_key: str,
    dag_flow: str,
    files_path: str | Path | None = None,
    default_worker_config: WorkerConfig | None = None,
    custom_worker_configs: folder.CustomConfigs = None,
    schedule_interval: str | None = None,
    start_date: datetime | None = None,
    retries: int = 0,
    overwrite_existing: bool = False,
    *,
    output_path: str | Path | None = None,
    username: str | None = None,
) -> Path:
    """Write an Airflow DAG folder for ``dag_flow`` over the task files in ``files_path``; return the DAG file.

    The folder (``output_path``, default: ``files_path`` itself) gets ``<dag_key>_dag.py``, a copy
    of ``files_path``, ``default_worker.json`` from ``default_worker_config`` and a
    ``<task>_worker.json`` for each of ``custom_worker_configs``. ``schedule_interval`` is a cron
    expression or preset (None: only triggered by hand). Files already there are kept unless
    ``overwrite_existing``.
    """
    source = Path(files_path) if files_path is not None else Path.cwd()
    graph = dag.parse(dag_flow)
    folder.task_files(source, graph)
    out = Path(output_path) if output_path is not None else source
    dag_file = out / f"{_dag_key(dag_key)}_dag.py"
    written = _config_files(out, default_worker_config, custom_worker_configs, graph)
    taken = [path.name for path in [*written, dag_file] if path.exists()]
    if taken and not overwrite_existing:
        raise DagFilesExist(taken, out)
    if out.resolve() != source.resolve():
        shutil.copytree(source, out, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
    for path, text in written.items():
        path.write_text(text)
    info = {"dag_key": dag_key, "username": username or getpass.getuser()}
    (out / DAG_INFO).write_text(json.dumps(info) + "\n")
    dag_file.write_text(render(dag_key, graph, schedule_interval, start_date or datetime(2025, 1, 1), retries))
    return dag_file


def _dag_key(dag_key: str) -> str:
    if not dag_key or _ID_PART.search(dag_key):
        raise InvalidInput(f"dag_key {dag_key!r} must be letters, digits, '_' or '-'", field="dag_key")
    return dag_key


def _config_files(
    out: Path, default: WorkerConfig | None, custom: folder.CustomConfigs, graph: dag.Dag
) -> dict[Path, str]:
    """The worker config files to write beside the DAG file: path -> text."""
    pairs = dict(custom.items() if isinstance(custom, Mapping) else custom or ())
    unknown = sorted(set(pairs) - set(graph.names))
    if unknown:
        raise InvalidInput(f"custom_worker_configs names tasks not in the flow: {', '.join(unknown)}",
                           field="custom_worker_configs")
    files = {out / f"{name}_worker.json": config.model_dump_json(exclude_none=True) for name, config in pairs.items()}
    if default is not None:
        files[out / "default_worker.json"] = default.model_dump_json(exclude_none=True)
    return files
