"""Files into and out of a worker's task folder, for its owner (``Worker.upload_files`` / ``download_files``).

The agent does the writing and reading, outside the sandbox, so nothing may lead it out of the task
folder: every path is resolved (with the symlinks a task may have left there) and must stay inside
it, archives are unpacked by :func:`archive.safe_extract`, files are given to the task's user
without following links, and a download stores symlinks as symlinks, never what they point to.
Files move only between tasks (see ``WorkerCommands.between_tasks``): no task process is there to
swap a path for a link while they do.
"""

from __future__ import annotations

import base64
import io
import os
import tarfile
from pathlib import Path, PurePosixPath

from .archive import safe_extract

TASK_HOME = "~/practicus/task"  # where Practicus AI keeps a task's files: here, the task folder


class OutsideTaskFolder(ValueError):
    """A path that is not inside the worker's task folder."""


def inside(task_dir: Path, relative: str) -> Path:
    """``relative`` (to the task folder, or under ``~/practicus/task``) as a path in it, links resolved."""
    text = relative.strip() or "."
    if text == TASK_HOME or text.startswith(TASK_HOME + "/"):
        text = text[len(TASK_HOME):].lstrip("/") or "."
    if PurePosixPath(text).is_absolute() or text.startswith("~"):
        raise OutsideTaskFolder(f"{relative!r} is not a path in the worker's task folder: give it relative to it")
    root = task_dir.resolve()
    path = (root / text).resolve()
    if path != root and root not in path.parents:
        raise OutsideTaskFolder(f"{relative!r} leads out of the worker's task folder")
    return path


def put(task_dir: Path, archive_b64: str, destination: str, uid: int | None, max_bytes: int | None) -> list[str]:
    """Unpack the archive into ``destination`` of the task folder; the names written (given to ``uid``).
    An archive that unpacks to more than ``max_bytes`` is refused before anything is written."""
    task_dir.mkdir(parents=True, exist_ok=True)
    target = inside(task_dir, destination)
    made = _missing_parents(task_dir.resolve(), target)
    names = safe_extract(io.BytesIO(base64.b64decode(archive_b64)), target, max_bytes=max_bytes)
    if uid is not None:
        for path in made + [target / name for name in names]:
            os.chown(path, uid, uid, follow_symlinks=False)
    return names


def _missing_parents(root: Path, target: Path) -> list[Path]:
    """The folders from ``root`` down to ``target`` that do not exist yet (to be made by the extraction)."""
    missing = []
    while target != root and not target.exists():
        missing.append(target)
        target = target.parent
    for folder in reversed(missing):
        folder.mkdir()
    return missing


def get(task_dir: Path, source: str, max_bytes: int) -> str:
    """``source`` (a file or folder of the task folder) as a gzip'd tar, base64: a file under its own
    name, a folder as what it holds. ValueError once it packs over ``max_bytes``."""
    path = inside(task_dir, source)
    if not path.exists():
        raise FileNotFoundError(f"the worker's task folder holds no {source!r}")
    data = _Bounded(max_bytes, source)
    with tarfile.open(fileobj=data, mode="w:gz") as tar:
        entries = sorted(path.iterdir()) if path.is_dir() else [path]
        for entry in entries:
            tar.add(entry, arcname=entry.name, recursive=True)
    return base64.b64encode(data.getvalue()).decode()


class _Bounded(io.BytesIO):
    """An archive in memory that refuses to grow past the limit."""

    def __init__(self, max_bytes: int, source: str) -> None:
        super().__init__()
        self.max_bytes, self.source = max_bytes, source

    def write(self, data) -> int:  # type: ignore[override]
        if self.tell() + len(data) > self.max_bytes:
            raise ValueError(f"{self.source!r} packs to more than the server's upload limit of "
                             f"{self.max_bytes / (1024 * 1024):.3g} MB")
        return super().write(data)
