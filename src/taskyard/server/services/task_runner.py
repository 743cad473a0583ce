"""The Task Runner API: a CI system's request made a task (see ``taskyard.task_runner`` for the rule
of where its files come from)."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from taskyard.agent import archive
from taskyard.agent.git import Repository
from taskyard.errors import Conflict, InvalidInput, NotFound
from taskyard.models import TaskSpec
from taskyard.server.db.models import TaskRow, UserRow
from taskyard.server.services import folders
from taskyard.server.storage import Storage, bundle_key
from taskyard.task_runner import TaskRunnerRequest

_HASH = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Source:
    """Where a request's task comes from: the file to run and the bundle that is its folder."""

    file_name: str
    bundle_sha256: str
    bundle_size: int


def existing(session: Session, user: UserRow, task_id: str) -> TaskRow | None:
    """The task already started under ``task_id`` by ``user``; Conflict if another user holds the id."""
    task = session.get(TaskRow, task_id)
    if task is not None and task.user_id != user.id and not user.is_admin:
        raise Conflict(f"task id {task_id!r} is already used by another user's task; choose another", field="task_id")
    return task


def source(session: Session, storage: Storage, user: UserRow, request: TaskRunnerRequest) -> Source:
    if request.files is None:
        return _from_git(storage, user, request)
    if _HASH.fullmatch(request.files):
        return _from_bundle(storage, user, request, request.files, f"the uploaded folder {request.files}")
    folder = folders.find(session, user, request.files)
    return _from_bundle(storage, user, request, folder.bundle_sha256, f"the folder {request.files!r}")


def _from_git(storage: Storage, user: UserRow, request: TaskRunnerRequest) -> Source:
    repos = request.worker_config.git_configs or []
    if not repos:
        raise InvalidInput(
            "worker_config.git_configs: give a git repository holding the task file, or name a pushed folder "
            "in 'files'",
            field="worker_config.git_configs",
        )
    name = request.task_file_name
    dests = [Repository(repo.model_dump(exclude_none=True), index).dest for index, repo in enumerate(repos)]
    if name.split("/", 1)[0] not in dests or "/" not in name:  # a path in the first repository's checkout
        name = f"{dests[0]}/{name}"
    sha256, size = empty_bundle(storage, user)
    return Source(name, sha256, size)


def empty_bundle(storage: Storage, user: UserRow) -> tuple[str, int]:
    """The empty task folder (the git repositories fill it), stored for ``user``: its hash and size."""
    out = io.BytesIO()
    archive.write_tar(Path("."), out, [])
    data = out.getvalue()
    sha256 = hashlib.sha256(data).hexdigest()
    key = bundle_key(user.id, sha256)
    if not storage.exists(key):
        storage.put_bytes(key, data)
    return sha256, len(data)


def _from_bundle(storage: Storage, user: UserRow, request: TaskRunnerRequest, sha256: str, where: str) -> Source:
    path = storage.path(bundle_key(user.id, sha256))
    if not path.is_file():
        raise NotFound(f"files: no uploaded folder with bundle hash {sha256}", field="files")
    names = folders.file_names(path)
    if request.task_file_name not in names:
        raise InvalidInput(folders.missing_file_message(request.task_file_name, where, names), field="task_file_name")
    return Source(request.task_file_name, sha256, path.stat().st_size)


def spec(request: TaskRunnerRequest, found: Source) -> TaskSpec:
    return TaskSpec(
        task_id=request.task_id,
        file_name=found.file_name,
        worker_config=request.worker_config,
        terminate_on_completion=request.terminate_on_completion,
        callback_url=request.callback_url,
        callback_url_token=request.callback_url_token,
        bundle_sha256=found.bundle_sha256,
        bundle_size=found.bundle_size,
    )
