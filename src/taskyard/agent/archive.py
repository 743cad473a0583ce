"""Deterministic tar.gz packing and safe extraction of task folders.

Standard library only: this module is copied into worker images on its own.

Packing (``write_tar``, ``pack_dir``):

* members are sorted by their path parts and named with POSIX paths relative to the root;
* owner is ``0:0`` with empty user and group names, the gzip header has mtime 0 and no file name;
* file mtimes are kept (whole seconds); modes are normalised to ``0o755`` (directories and files
  with any execute bit) or ``0o644`` (other files), so the umask of the packing machine does not
  leak into the bytes;
* symlinks whose target resolves inside the root are kept as relative symlinks; symlinks that
  point outside the root, dangle outside it or loop are skipped, and so are sockets, fifos and
  devices.

The same folder contents therefore always give the same bytes.

Extraction (``safe_extract``) checks every member before writing anything and refuses the whole
archive with ``ValueError`` if one member is unsafe.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import posixpath
import shutil
import stat
import tarfile
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

__all__ = ["iter_files", "pack_dir", "safe_extract", "write_tar"]

COMPRESS_LEVEL = 6
_MAX_LINK_HOPS = 40
_FilterError = getattr(tarfile, "FilterError", ())


# ---------------------------------------------------------------------------- packing


def iter_files(root: Path, exclude: Callable[[str], bool] | None = None) -> list[Path]:
    """Sorted paths, relative to ``root``, of the files and symlinks under ``root``.

    ``exclude`` receives each relative POSIX path (directories with a trailing ``/``) and returns
    True to leave it out; excluded directories are never descended. Symlinks to directories are
    listed like files (they are not followed) and are offered to ``exclude`` as directories.
    Empty directories are not listed.
    """
    root = Path(root)
    skip = exclude or (lambda _rel: False)
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root, topdown=True):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = _walkable_dirs(root, rel_dir, dirnames, skip, found)
        found.extend(rel_dir / name for name in filenames if not skip((rel_dir / name).as_posix()))
    return sorted(found, key=_sort_key)


def _walkable_dirs(
    root: Path, rel_dir: Path, dirnames: list[str], skip: Callable[[str], bool], found: list[Path]
) -> list[str]:
    keep = []
    for name in sorted(dirnames):
        rel = rel_dir / name
        if skip(rel.as_posix() + "/"):
            continue
        if (root / rel).is_symlink():
            found.append(rel)
        else:
            keep.append(name)
    return keep


def _sort_key(path: Path) -> tuple[str, ...]:
    return PurePosixPath(Path(path).as_posix()).parts


def write_tar(root: Path, out: BinaryIO, files: Iterable[Path]) -> int:
    """Write a deterministic gzip'd tar of ``files`` (relative to ``root``) to ``out``.

    Only regular files, directories (added without their contents) and symlinks resolving inside
    ``root`` are stored; anything else is skipped. Returns the number of bytes written to ``out``.
    """
    root = Path(root)
    counter = _CountingWriter(out)
    rels = sorted({_relative(root, p) for p in files}, key=_sort_key)
    with (
        gzip.GzipFile(filename="", fileobj=counter, mode="wb", mtime=0, compresslevel=COMPRESS_LEVEL) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for rel in rels:
            _add_member(tar, root, rel)
    return counter.count


def pack_dir(root: Path, out: BinaryIO) -> int:
    """Pack everything under ``root`` (see ``write_tar``); returns the bytes written."""
    return write_tar(root, out, iter_files(root))


class _CountingWriter:
    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self.count = 0

    def write(self, data: bytes) -> int:
        self._out.write(data)
        self.count += len(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def _relative(root: Path, path: Path) -> Path:
    path = Path(path)
    return path.relative_to(root) if path.is_absolute() else path


def _add_member(tar: tarfile.TarFile, root: Path, rel: Path) -> None:
    full = root / rel
    try:
        st = os.lstat(full)
    except FileNotFoundError:
        return
    info = _base_info(rel, st)
    if stat.S_ISREG(st.st_mode):
        info.size = st.st_size
        with open(full, "rb") as fh:
            tar.addfile(info, fh)
    elif stat.S_ISDIR(st.st_mode):
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif stat.S_ISLNK(st.st_mode):
        target = _inside_link_target(root, rel)
        if target is not None:
            info.type, info.linkname, info.mode = tarfile.SYMTYPE, target, 0o777
            tar.addfile(info)


def _base_info(rel: Path, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(rel.as_posix())
    executable = stat.S_ISDIR(st.st_mode) or st.st_mode & 0o111
    info.mode = 0o755 if executable else 0o644
    info.mtime = int(st.st_mtime)
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def _inside_link_target(root: Path, rel: Path) -> str | None:
    """The symlink's target relative to its folder if it resolves inside ``root``, else None."""
    real_root = root.resolve()
    try:
        resolved = (root / rel).resolve()
    except (OSError, RuntimeError):
        return None
    # A loop may come back unresolved (newer Pythons) instead of raising.
    if not resolved.is_relative_to(real_root) or resolved == real_root / rel:
        return None
    return Path(os.path.relpath(resolved, (real_root / rel).parent)).as_posix()


# ---------------------------------------------------------------------------- extraction


def safe_extract(archive: BinaryIO | Path, dest: Path, *, max_bytes: int | None = None) -> list[str]:
    """Extract a tar (gzip'd or plain) into ``dest`` and return the extracted member names.

    Every member is checked before anything is written. The archive is refused with
    ``ValueError`` if any member has an absolute path or a ``..`` component, is a device, fifo or
    other special file, appears twice, lies below a symlink member, is a symlink or hardlink whose
    target resolves outside ``dest`` (following the archive's own symlinks and any already in
    ``dest``), or would otherwise land outside ``dest``. ``tarfile.data_filter`` is applied too
    when the running Python has it. A file object must be readable; it is spooled to a temporary
    file first if it cannot seek. With ``max_bytes``, an archive whose files add up to more is
    refused (``TooBig``) as soon as its headers say so, before anything is written.
    """
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    with os.scandir(root) as entries:
        on_disk = _Disk(root, empty=next(entries, None) is None)
    with _open_tar(archive) as tar:
        members = _checked_members(tar, on_disk, max_bytes)
        _extract(tar, members, root)
    return [_normalise(m.name) for m in members]


@contextlib.contextmanager
def _open_tar(archive: BinaryIO | Path) -> Iterator[tarfile.TarFile]:
    if isinstance(archive, (str, os.PathLike)):
        with tarfile.open(archive, mode="r:*") as tar:
            yield tar
    elif hasattr(archive, "seekable") and archive.seekable():
        with tarfile.open(fileobj=archive, mode="r:*") as tar:
            yield tar
    else:
        with tempfile.TemporaryFile() as spool:
            shutil.copyfileobj(archive, spool)
            spool.seek(0)
            with tarfile.open(fileobj=spool, mode="r:*") as tar:
                yield tar


def _extract(tar: tarfile.TarFile, members: list[tarfile.TarInfo], root: Path) -> None:
    try:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(root, members=members, filter="data")
        else:
            tar.extractall(root, members=members)
    except _FilterError as exc:
        raise ValueError(f"refusing archive: {exc}") from exc


class TooBig(ValueError):
    """The archive unpacks to more than it may."""


def _checked_members(tar: tarfile.TarFile, on_disk: _Disk, max_bytes: int | None = None) -> list[tarfile.TarInfo]:
    members, total = [], 0
    for member in tar:  # header by header: a bomb is refused at its first big header, unread
        total += member.size if member.isfile() else 0
        if max_bytes is not None and total > max_bytes:
            raise TooBig(f"the task's files unpack to more than the limit of {_mb(max_bytes)} (TASKYARD_MAX_UNPACK_MB)")
        _check_name(member)
        members.append(member)
    members = [m for m in members if _normalise(m.name)]
    _check_unique(members)
    links = {_normalise(m.name): m.linkname for m in members if m.issym()}
    for member in members:
        _check_member(member, links, on_disk)
    return members


def _mb(size: int) -> str:
    return f"{size / (1024 * 1024):g} MB"


def _refuse(member: tarfile.TarInfo, why: str) -> ValueError:
    return ValueError(f"refusing archive: member {member.name!r} {why}")


def _normalise(name: str) -> str:
    """The member name as a clean relative POSIX path ('' for the archive root)."""
    return "/".join(part for part in name.split("/") if part not in ("", "."))


def _check_name(member: tarfile.TarInfo) -> None:
    name = member.name
    if name.startswith(("/", "\\")) or os.path.isabs(name):
        raise _refuse(member, "has an absolute path")
    if ".." in name.replace("\\", "/").split("/"):
        raise _refuse(member, "has a '..' component")
    if not (member.isreg() or member.isdir() or member.issym() or member.islnk()):
        raise _refuse(member, "is a device, fifo or other special file")


def _check_unique(members: list[tarfile.TarInfo]) -> None:
    seen: set[str] = set()
    for member in members:
        name = _normalise(member.name)
        if name in seen:
            raise _refuse(member, "appears more than once")
        seen.add(name)


def _check_member(member: tarfile.TarInfo, links: dict[str, str], on_disk: _Disk) -> None:
    name = _normalise(member.name)
    parts = name.split("/")
    for i in range(1, len(parts)):
        if "/".join(parts[:i]) in links:
            raise _refuse(member, f"lies below the symlink member {'/'.join(parts[:i])!r}")
    if not on_disk.inside(name):
        raise _refuse(member, "lands outside the destination")
    if member.issym() or member.islnk():
        _check_link(member, name, links, on_disk)


def _check_link(member: tarfile.TarInfo, name: str, links: dict[str, str], on_disk: _Disk) -> None:
    target = member.linkname
    if not target:
        raise _refuse(member, "has an empty link target")
    if target.startswith(("/", "\\")) or os.path.isabs(target):
        raise _refuse(member, f"links to the absolute path {target!r}")
    start = posixpath.dirname(name) if member.issym() else ""
    resolved = _resolve_in_archive(posixpath.join(start, target), links)
    if resolved is None or not on_disk.inside(resolved):
        raise _refuse(member, f"links to {target!r}, outside the destination")


class _Disk:
    """The destination as it is before extraction: an empty one holds no symlink to follow."""

    def __init__(self, root: Path, *, empty: bool) -> None:
        self.root, self.empty = root, empty

    def inside(self, rel: str) -> bool:
        """Whether ``root/rel`` (relative, no ``..``) stays inside ``root`` once symlinks already on disk are
        followed; in an empty destination it does, with no system call (a realpath is one per component)."""
        if self.empty or not rel:
            return True
        real = os.path.realpath(self.root / rel)
        return os.path.commonpath([real, str(self.root)]) == str(self.root)


def _resolve_in_archive(path: str, links: dict[str, str]) -> str | None:
    """Resolve ``path`` (relative to the archive root) through the archive's symlinks.

    Returns the resolved relative path, or None if it escapes the root, is absolute, or loops.
    """
    pending = [p for p in path.split("/") if p not in ("", ".")]
    pending.reverse()
    stack: list[str] = []
    hops = 0
    while pending:
        part = pending.pop()
        if part == "..":
            if not stack:
                return None
            stack.pop()
            continue
        stack.append(part)
        target = links.get("/".join(stack))
        if target is None:
            continue
        hops += 1
        if hops > _MAX_LINK_HOPS or target.startswith("/") or os.path.isabs(target):
            return None
        stack.pop()
        pending.extend(reversed([p for p in target.split("/") if p not in ("", ".")]))
    return "/".join(stack)
