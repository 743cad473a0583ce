"""What an uploaded task folder must be before it is kept: the size it said, a whole gzip'd tar, bounded unpacked."""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

from taskyard.errors import InvalidInput, TooLarge


def check_bundle(path: Path, size: int, *, declared: int, max_unpack: int) -> None:
    """Refuse a bundle whose measured size is not the declared one, that is no complete tar.gz, or that unpacks too big.

    The headers are read one by one, so a bomb is refused at its first big header; reaching the
    archive's end is what shows it was not cut short.
    """
    if size != declared:
        raise InvalidInput(f"the upload has {size} bytes, not the {declared} its task declared", field="bundle_size")
    check_archive(path, size, max_unpack=max_unpack)


def check_archive(path: Path, size: int, *, max_unpack: int) -> None:
    """Refuse an upload that is no complete tar.gz, or that unpacks to more than ``max_unpack`` bytes."""
    try:
        _unpacked_size(path, max_unpack)
    except (tarfile.TarError, EOFError, zlib.error, OSError) as exc:
        raise InvalidInput(f"the upload is not a complete tar.gz archive ({type(exc).__name__}: {exc})") from None


def _unpacked_size(path: Path, max_unpack: int) -> int:
    total = 0
    with tarfile.open(path, mode="r:gz") as tar:
        for member in tar:
            total += member.size if member.isfile() else 0
            if total > max_unpack:
                raise TooLarge(
                    f"the task folder unpacks to more than the limit of {max_unpack / (1024 * 1024):g} MB"
                    " (TASKYARD_MAX_UNPACK_MB)",
                    field="bundle",
                )
    return total
