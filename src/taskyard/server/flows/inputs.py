"""A flow task's files with its inputs: the run's folder, plus each upstream's outputs under ``inputs/<name>/``.

Made on the control plane from blobs it holds (the run's bundle, the upstream tasks' outputs), as a
new content-addressed bundle: the agent fetches it as any other. Only a Success's complete outputs
are passed on. The same files and inputs always give the same bytes, so making it twice is harmless.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from collections.abc import Mapping
from pathlib import Path

from taskyard.errors import TooLarge

INPUTS = "inputs"


def compose(base: Path, inputs: Mapping[str, Path | None], *, max_bytes: int) -> tuple[bytes, str]:
    """The gzip'd tar of ``base`` with each ``inputs`` archive (None: no outputs) under ``inputs/<name>/``.

    Returns the bytes and their sha256. Members of ``base`` under ``inputs/<name>/`` give way.
    """
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0, compresslevel=6) as gz, tarfile.open(
        fileobj=gz, mode="w", format=tarfile.PAX_FORMAT
    ) as out:
        shadowed = tuple(f"{INPUTS}/{name}" for name in inputs)
        _copy(base, out, "", lambda member: not _clean(member.name).rstrip("/").startswith(shadowed))
        for name in sorted(inputs):
            folder = tarfile.TarInfo(f"{INPUTS}/{name}")
            folder.type, folder.mode = tarfile.DIRTYPE, 0o755
            out.addfile(folder)  # there even when the upstream task wrote no outputs
            archive = inputs[name]
            if archive is not None:
                _copy(archive, out, f"{INPUTS}/{name}/", lambda member: True)
    data = buffer.getvalue()
    if len(data) > max_bytes:
        raise TooLarge(f"the task's files with its inputs pack to {len(data) / 1e6:.1f} MB, over the upload limit")
    return data, hashlib.sha256(data).hexdigest()


def _copy(archive: Path, out: tarfile.TarFile, prefix: str, keep) -> None:
    with tarfile.open(archive, mode="r:*") as tar:
        for member in tar.getmembers():
            if not keep(member) or not (member.isfile() or member.isdir() or member.issym()):
                continue
            member.name = prefix + _clean(member.name)
            if member.name.rstrip("/") in ("", prefix.rstrip("/")):
                continue
            out.addfile(member, tar.extractfile(member) if member.isfile() else None)


def _clean(name: str) -> str:
    return name[2:] if name.startswith("./") else name
