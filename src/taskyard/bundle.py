"""Pack a task folder (``files_path``) into a deterministic tar.gz for upload.

Exclusion patterns are a small gitignore-like syntax:

* a pattern ending in ``/`` matches a directory of that name at any depth (its contents are
  never read);
* any other pattern is an ``fnmatch`` pattern matched against the basename, or against the whole
  relative POSIX path when it contains a ``/`` (a leading ``/`` is allowed and ignored);
* matching is case-sensitive; negation (``!pattern``) is not supported and such lines are ignored.

``DEFAULT_EXCLUDES`` always apply; a ``.taskyardignore`` file at the top of the folder adds
patterns, one per line (blank lines and ``#`` comments are ignored), and so does ``extra_excludes``.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fnmatch import translate
from pathlib import Path
from typing import BinaryIO

from taskyard import settings
from taskyard.agent import archive
from taskyard.errors import InvalidInput, TooLarge

__all__ = ["DEFAULT_EXCLUDES", "IGNORE_FILE", "Bundle", "pack"]

DEFAULT_EXCLUDES: tuple[str, ...] = (
    ".git/",
    ".venv/",
    "venv/",
    "__pycache__/",
    "node_modules/",
    ".ipynb_checkpoints/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".ruff_cache/",
    ".DS_Store",
    "*.pyc",
)
IGNORE_FILE = ".taskyardignore"
EARLY_REFUSAL_FACTOR = 4
_MB = 1024 * 1024


@dataclass(frozen=True)
class Bundle:
    """A packed task folder in a temporary file; ``close()`` (or ``with``) deletes the file."""

    path: Path
    sha256: str
    size: int
    file_count: int

    def close(self) -> None:
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def pack(files_path: str | Path, *, max_bytes: int | None = None, extra_excludes: Sequence[str] = ()) -> Bundle:
    """Pack ``files_path`` into a temporary tar.gz and return it as a ``Bundle``.

    Raises ``InvalidInput`` if the folder is missing or not a directory, and ``TooLarge`` if the
    packed folder is over ``max_bytes`` (default: ``TASKYARD_MAX_UPLOAD_MB``). A folder whose files
    add up to more than four times the limit is refused before anything is compressed.
    """
    root = _check_folder(files_path)
    limit = settings.max_upload_bytes() if max_bytes is None else max_bytes
    patterns = (*DEFAULT_EXCLUDES, *read_ignore_file(root), *extra_excludes)
    files = archive.iter_files(root, exclude=_without_control_planes(root, make_matcher(patterns)))
    sizes = {rel: _size(root / rel) for rel in files}
    total = _human(sum(sizes.values()))
    if sum(sizes.values()) > EARLY_REFUSAL_FACTOR * limit:
        why = f"its files add up to {total}, over {EARLY_REFUSAL_FACTOR}x the limit, so it was not packed"
        raise _too_large(root, limit, why, sizes)
    path, digest, size = _write_bundle(root, files, limit)
    if size is None:
        why = f"the packed size is over {_human(limit)} (its files add up to {total})"
        raise _too_large(root, limit, why, sizes)
    return Bundle(path=path, sha256=digest, size=size, file_count=len(files))


def _check_folder(files_path: str | Path) -> Path:
    root = Path(files_path).expanduser()
    if not root.exists():
        raise InvalidInput(f"files_path {str(root)!r} does not exist", field="files_path")
    if not root.is_dir():
        raise InvalidInput(f"files_path {str(root)!r} is not a directory", field="files_path")
    if is_control_plane_home(root):
        raise InvalidInput(
            f"files_path {str(root)!r} holds a taskyard server's database or token; it is never packed",
            field="files_path",
        )
    return root


#: files that mark a folder as a control plane's home: its database, its vault key, its token
CONTROL_PLANE_MARKS = ("taskyard.db", "vault.key", "server.json")


def is_control_plane_home(folder: Path) -> bool:
    """Whether ``folder`` is ``TASKYARD_HOME`` or holds a taskyard database, vault key or admin token."""
    try:
        if folder.resolve() == settings.home().resolve():
            return True
        if any((folder / mark).is_file() for mark in CONTROL_PLANE_MARKS):
            return True
        token = folder / "token"
        return token.is_file() and token.stat().st_size < 256 and token.read_bytes().startswith(b"ty_")
    except OSError:
        return False


def _without_control_planes(root: Path, excluded: Callable[[str], bool]) -> Callable[[str], bool]:
    """``excluded``, and every folder that is a control plane's home (never packed, whatever the patterns)."""

    def check(rel: str) -> bool:
        return excluded(rel) or (rel.endswith("/") and is_control_plane_home(root / rel.rstrip("/")))

    return check


def read_ignore_file(root: Path) -> list[str]:
    """The patterns in ``root/.taskyardignore`` (none if there is no such file)."""
    try:
        text = (Path(root) / IGNORE_FILE).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    lines = (line.strip() for line in text.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def make_matcher(patterns: Sequence[str]) -> Callable[[str], bool]:
    """A predicate over relative POSIX paths (directories end with ``/``) for ``patterns``."""
    compiled = [_compile(p) for p in patterns if p.strip() and not p.startswith("!")]

    def excluded(rel: str) -> bool:
        is_dir = rel.endswith("/")
        path = rel.rstrip("/")
        name = path.rsplit("/", 1)[-1]
        for regex, dir_only, whole_path in compiled:
            if dir_only and not is_dir:
                continue
            if regex.match(path if whole_path else name):
                return True
        return False

    return excluded


@functools.lru_cache(maxsize=512)
def _compile(pattern: str) -> tuple[re.Pattern[str], bool, bool]:
    pattern = pattern.strip()
    dir_only = pattern.endswith("/")
    body = pattern.rstrip("/")
    whole_path = "/" in body
    return re.compile(translate(body.lstrip("/"))), dir_only, whole_path


def _size(path: Path) -> int:
    try:
        st = os.lstat(path)
    except OSError:
        return 0
    return st.st_size if stat.S_ISREG(st.st_mode) else 0


class _Overflow(Exception):
    pass


class _HashingWriter:
    """Hashes and counts what passes through; raises ``_Overflow`` past ``limit`` bytes."""

    def __init__(self, out: BinaryIO, limit: int) -> None:
        self._out = out
        self._limit = limit
        self.count = 0
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.count += len(data)
        if self.count > self._limit:
            raise _Overflow
        self.sha256.update(data)
        self._out.write(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def _write_bundle(root: Path, files: list[Path], limit: int) -> tuple[Path, str, int | None]:
    """Pack into a new temporary file; size is None (and the file gone) if over ``limit``."""
    fd, name = tempfile.mkstemp(prefix="taskyard-bundle-", suffix=".tar.gz")
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as out:
            writer = _HashingWriter(out, limit)
            archive.write_tar(root, writer, files)  # type: ignore[arg-type]
    except _Overflow:
        path.unlink(missing_ok=True)
        return path, "", None
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return path, writer.sha256.hexdigest(), writer.count


def _too_large(root: Path, limit: int, why: str, sizes: dict[Path, int]) -> TooLarge:
    largest = sorted(sizes.items(), key=lambda item: (-item[1], item[0].as_posix()))[:5]
    listing = "\n".join(f"  {rel.as_posix()}  {_human(size)}" for rel, size in largest)
    message = (
        f"task folder {str(root)!r} is too large to upload: the limit is {limit / _MB:.3g} MB, the server's "
        f"(TASKYARD_MAX_UPLOAD_MB where it runs), and {why}.\nLargest files:\n{listing or '  (none)'}\n"
        f"To fix it: add patterns to a {IGNORE_FILE} file in {root}, point files_path at a smaller "
        f"folder, or raise TASKYARD_MAX_UPLOAD_MB on the server. {raise_limit_hint(sum(sizes.values()))}"
    )
    return TooLarge(message, field="files_path")


def raise_limit_hint(size: int) -> str:
    """How to raise the server's upload limit to hold ``size`` bytes."""
    mb = max(1, math.ceil(size * 1.1 / _MB))
    return (
        f"A server you run yourself: start it with TASKYARD_MAX_UPLOAD_MB={mb} in its environment "
        f"(the embedded one: `taskyard server stop`, then run again with TASKYARD_MAX_UPLOAD_MB={mb} set)."
    )


def _human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")
