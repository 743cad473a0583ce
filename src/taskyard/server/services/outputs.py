"""A task's outputs archive, read on the server: which files it holds."""

from __future__ import annotations

import tarfile
from pathlib import Path

from taskyard.models import OutputFile, OutputFiles


def list_files(archive: Path, *, partial: bool) -> OutputFiles:
    """The regular files of the gzip'd tar at ``archive`` with their sizes (folders and links left out)."""
    with tarfile.open(archive, mode="r:*") as tar:
        files = [OutputFile(name=_clean(m.name), size=m.size) for m in tar.getmembers() if m.isfile()]
    total = sum(f.size for f in files)
    return OutputFiles(files=files, total_size=total, archive_size=archive.stat().st_size, partial=partial)


def _clean(name: str) -> str:
    """A member name without the ``./`` some tars put in front."""
    return name[2:] if name.startswith("./") else name
