"""Files to and from a worker's task folder, as ``Worker.upload_files`` and ``download_files`` move them.

Both ways a file travels under its own name and a folder as what it holds, packed as a gzip'd tar
that the control plane carries (at most its upload limit, TASKYARD_MAX_UPLOAD_MB) and the worker's
agent unpacks inside the task folder, where its tasks (in their sandbox) see it.
"""

from __future__ import annotations

import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taskyard.bundle import raise_limit_hint
from taskyard.errors import InvalidInput


@contextmanager
def packed(source: Path, max_bytes: int) -> Iterator[Path]:
    """``source`` packed in a temporary file; InvalidInput if it is missing or packs over ``max_bytes``."""
    if not source.exists():
        raise InvalidInput(f"{source} does not exist", field="source")
    with tempfile.TemporaryDirectory(prefix="taskyard-upload-") as scratch:
        archive = Path(scratch) / "files.tar.gz"
        with tarfile.open(archive, "w:gz") as tar:
            for entry in sorted(source.iterdir()) if source.is_dir() else [source]:
                tar.add(entry, arcname=entry.name, recursive=True)
        size = archive.stat().st_size
        if size > max_bytes:
            raise InvalidInput(
                f"{source} packs to {size / 1e6:.1f} MB, over the server's upload limit of "
                f"{max_bytes / (1024 * 1024):.3g} MB (its TASKYARD_MAX_UPLOAD_MB). {raise_limit_hint(size)}",
                field="source",
            )
        yield archive


def unpack(archive: Path, destination: Path, max_bytes: int) -> list[str]:
    """Unpack a downloaded archive into ``destination`` (made if need be), refusing any path out of it
    and, before writing anything, an archive that unpacks to more than ``max_bytes``."""
    from taskyard.agent.archive import safe_extract

    return safe_extract(archive, destination, max_bytes=max_bytes)
