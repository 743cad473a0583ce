"""A task's outputs archive, read on the server: which files it holds, and the end of one."""

from __future__ import annotations

import tarfile
from pathlib import Path

from taskyard.errors import NotFound
from taskyard.models import OutputFile, OutputFiles
from taskyard.task_files import last_lines


def list_files(archive: Path, *, partial: bool) -> OutputFiles:
    """The regular files of the gzip'd tar at ``archive`` with their sizes (folders and links left out)."""
    with tarfile.open(archive, mode="r:*") as tar:
        files = [OutputFile(name=_clean(m.name), size=m.size) for m in tar.getmembers() if m.isfile()]
    total = sum(f.size for f in files)
    return OutputFiles(files=files, total_size=total, archive_size=archive.stat().st_size, partial=partial)


def _clean(name: str) -> str:
    """A member name without the ``./`` some tars put in front."""
    return name[2:] if name.startswith("./") else name


def tail_file(archive: Path, name: str, lines: int, max_bytes: int = 1 << 20) -> str:
    """The last ``lines`` lines of file ``name`` of the archive (from its last ``max_bytes`` at most).

    Raises NotFound if the archive holds no such regular file.
    """
    with tarfile.open(archive, mode="r:*") as tar:
        member = next((m for m in tar.getmembers() if m.isfile() and _clean(m.name) == name), None)
        source = tar.extractfile(member) if member is not None else None
        if member is None or source is None:
            raise NotFound(f"the outputs hold no {name}", field="name")
        source.seek(max(0, member.size - max_bytes))
        text = source.read().decode("utf-8", "replace")
    return last_lines(text, lines)

