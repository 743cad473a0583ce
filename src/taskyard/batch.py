"""Many tasks of one folder submitted at once: ``taskyard.submit_many``.

The folder is packed and uploaded once; the tasks go to the server in batches of
``models.MAX_BATCH`` (``POST /tasks/batch``), each batch created in one transaction.
"""

from __future__ import annotations

from pathlib import Path

from taskyard import bundle
from taskyard.client import Client, default_client
from taskyard.config import WorkerConfig, worker_config_beside
from taskyard.errors import InvalidInput
from taskyard.models import MAX_BATCH, TaskInfo, TaskSpec
from taskyard.sdk import Pool, Task, _check_callback, _check_parameters, _check_task_file


def submit_many(
    file_name: str,
    files_path: str | Path | None = None,
    *,
    count: int | None = None,
    task_ids: list[str] | None = None,
    parameters: list[dict] | None = None,
    worker_config: WorkerConfig | None = None,
    pool: Pool | str | None = None,
    client: Client | None = None,
    **options,
) -> list[Task]:
    """Start many runs of ``file_name`` (from ``files_path``, default the current folder) and return at once.

    Give ``count`` runs, or one per entry of ``task_ids`` and/or of ``parameters`` (a notebook's
    parameters for each run; lists of the same length). Other keyword arguments (``time_to_live``,
    ``max_retries``, ``callback_url``...) are those of :func:`taskyard.submit`, the same for every task.
    A repeated task id finds its task again, as with ``submit``.
    """
    runs = _runs(count, task_ids, parameters)
    folder = Path(files_path) if files_path is not None else Path.cwd()
    _check_task_file(folder, file_name)
    for values in parameters or []:
        _check_parameters(values)
    _check_callback(options.get("callback_url"), options.get("callback_url_token"))
    config = worker_config or worker_config_beside(folder, file_name) or WorkerConfig()
    client = client or default_client()
    pool_name = (pool.name if isinstance(pool, Pool) else pool) or "default"
    with bundle.pack(folder, max_bytes=client.upload_limit()) as packed:
        base = dict(file_name=file_name, worker_config=config, pool=pool_name, bundle_sha256=packed.sha256,
                    bundle_size=packed.size, **options)
        same = TaskSpec(**base)  # the spec of every run that adds no field of its own (a plain count)
        specs = [TaskSpec(**base, **run) if run else same for run in runs]
        infos = [info for start in range(0, len(specs), MAX_BATCH)
                 for info in client.submit_batch(specs[start:start + MAX_BATCH])]
        infos = _uploaded(client, infos, packed.path)
    return [Task(info.id, client=client, info=info) for info in infos]


def _runs(count: int | None, task_ids: list[str] | None, parameters: list[dict] | None) -> list[dict]:
    """The per-task fields: ``task_id`` and ``parameters`` where given."""
    lengths = {len(values) for values in (task_ids, parameters) if values is not None}
    if count is not None:
        lengths.add(count)
    if len(lengths) != 1:
        raise InvalidInput("give count, task_ids or parameters, of one length when more than one", field="count")
    size = lengths.pop()
    if size < 1:
        raise InvalidInput(f"submit_many needs at least one task, not {size}", field="count")
    return [
        {key: values[index] for key, values in (("task_id", task_ids), ("parameters", parameters)) if values}
        for index in range(size)
    ]


def _uploaded(client: Client, infos: list[TaskInfo], path: Path) -> list[TaskInfo]:
    """Upload the folder for the first task that waits for it; the others then find it stored."""
    return [client.upload_bundle(info.id, path) if info.upload_required else info for info in infos]
