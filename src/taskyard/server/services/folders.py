"""Task folders pushed by name (``taskyard folders push NAME DIR``), and what a stored bundle holds."""

from __future__ import annotations

import tarfile
import zlib
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from taskyard.errors import InvalidInput, NotFound
from taskyard.models import check_id
from taskyard.server.db.models import FolderRow, UserRow, utcnow

LISTED = 20  # the most file names a "not in the folder" message lists


def check_name(name: str) -> None:
    try:
        check_id(name, "folder name")
    except ValueError as exc:
        raise InvalidInput(str(exc), field="name") from None


def save(session: Session, user: UserRow, name: str, sha256: str, size: int) -> FolderRow:
    """Make ``name`` stand for the bundle ``sha256`` (a push replaces what the name stood for)."""
    row = session.get(FolderRow, (user.id, name), with_for_update=True)
    if row is None:
        row = FolderRow(user_id=user.id, name=name)
        session.add(row)
    row.bundle_sha256, row.bundle_size, row.updated_at = sha256, size, utcnow()
    return row


def find(session: Session, user: UserRow, name: str) -> FolderRow:
    row = session.get(FolderRow, (user.id, name))
    if row is None:
        raise NotFound(f"no folder {name!r}; push one with `taskyard folders push {name} DIR`", field="files")
    return row


def listing(session: Session, user: UserRow) -> list[FolderRow]:
    return list(session.scalars(select(FolderRow).where(FolderRow.user_id == user.id).order_by(FolderRow.name)))


def file_names(path: Path) -> list[str]:
    """The regular files a stored bundle holds, as clean relative paths; InvalidInput if it is no archive."""
    try:
        with tarfile.open(path, mode="r:*") as tar:
            names = [member.name for member in tar.getmembers() if member.isfile()]
    except (tarfile.TarError, EOFError, OSError, zlib.error):
        raise InvalidInput("the upload is not a packed task folder (a tar.gz)", field="files") from None
    return ["/".join(part for part in name.split("/") if part not in ("", ".")) for name in names]


def missing_file_message(file_name: str, where: str, names: list[str]) -> str:
    shown = ", ".join(names[:LISTED]) + (f" and {len(names) - LISTED} more" if len(names) > LISTED else "")
    return f"task_file_name {file_name!r} is not in {where}; it holds: {shown or 'no file'}"
