"""A worker's own log: what its tasks printed when they were run with ``capture_task_output=False``.

That output is kept out of the task's captured log (it is not streamed, and ``Task.logs()`` does
not show it) but not lost: the agent ships it, secrets masked, to this log of its worker, which
the control plane keeps on its disk while the worker lives and shows with the tasks' logs in
``GET /workers/{name}/logs``. Once the worker has ended it is dropped.

Chunks are numbered per task by the agent; a resent chunk is acknowledged and not written twice.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from taskyard.models import LogChunk
from taskyard.server.storage import Storage

MAX_BYTES = 8 * 1024 * 1024  # past this, the oldest half is dropped


def folder(storage: Storage, worker_name: str) -> Path:
    return storage.path(f"workers/{worker_name}")


def append(storage: Storage, worker_name: str, task_id: str, chunks: list[LogChunk]) -> int:
    """Write the chunks after the last one written for ``task_id``; return the highest seq written."""
    place = folder(storage, worker_name)
    place.mkdir(parents=True, exist_ok=True)
    acked = _acked(place)
    last = acked.get(task_id, 0)
    fresh = [chunk for chunk in sorted(chunks, key=lambda c: c.seq) if chunk.seq > last]
    if fresh:
        with open(place / "output.log", "ab") as out:
            out.write("".join(chunk.text for chunk in fresh).encode("utf-8", "replace"))
        acked[task_id] = last = fresh[-1].seq
        (place / "acked.json").write_text(json.dumps(acked))
        _trim(place / "output.log")
    return last


def _acked(place: Path) -> dict[str, int]:
    try:
        return json.loads((place / "acked.json").read_text())
    except (OSError, ValueError):
        return {}


def _trim(path: Path) -> None:
    size = path.stat().st_size
    if size > MAX_BYTES:
        with open(path, "rb") as source:
            source.seek(size - MAX_BYTES // 2)
            kept = source.read()
        path.write_bytes(kept)


def read(storage: Storage, worker_name: str, max_bytes: int) -> str:
    """The last ``max_bytes`` of the worker's own log ("" if it has none)."""
    path = folder(storage, worker_name) / "output.log"
    try:
        size = path.stat().st_size
        with open(path, "rb") as source:
            source.seek(max(0, size - max_bytes))
            return source.read().decode("utf-8", "replace")
    except OSError:
        return ""


def drop(storage: Storage, worker_name: str) -> None:
    """Forget the log of a worker that has ended."""
    shutil.rmtree(folder(storage, worker_name), ignore_errors=True)
