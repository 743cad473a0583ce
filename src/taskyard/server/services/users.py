"""Users and their bearer tokens. Only token hashes are stored.

A token may expire (``token_expires_at``). A removed user keeps its row, so that its tasks keep
their owner, but no token of its works again, its name stays taken, and it is in no group.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from taskyard.errors import Conflict, Forbidden, NotFound, Unauthorized
from taskyard.server.db.models import GroupMemberRow, UserRow, utcnow

ADMIN = "admin"  # the name of the admin a server makes on its first start


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "ty_" + secrets.token_urlsafe(32)


def expiry(seconds: float | None) -> datetime | None:
    return None if seconds is None else utcnow() + timedelta(seconds=seconds)


def create_user(
    session: Session,
    name: str,
    *,
    is_admin: bool = False,
    token: str | None = None,
    expires_in: float | None = None,
):
    """Create a user; return ``(row, token)``. The token is shown once and never stored."""
    existing = session.scalar(select(UserRow).where(UserRow.name == name))
    if existing is not None:
        gone = " (removed; its name stays taken by its tasks)" if existing.removed_at else ""
        raise Conflict(f"user {name!r} already exists{gone}", field="name")
    token = token or new_token()
    row = UserRow(name=name, token_hash=hash_token(token), is_admin=is_admin, token_expires_at=expiry(expires_in))
    session.add(row)
    session.flush()
    return row, token


def ensure_admin(session: Session, name: str, token: str) -> UserRow:
    """Make sure an admin called ``name`` exists with ``token`` (given to the server at start)."""
    row = session.scalar(select(UserRow).where(UserRow.name == name))
    if row is None:
        return create_user(session, name, is_admin=True, token=token)[0]
    row.token_hash, row.is_admin, row.removed_at, row.token_expires_at = hash_token(token), True, None, None
    return row


def first_admin(session: Session) -> str | None:
    """On a database without users, make the admin and return its token (to be shown once); else None."""
    if session.scalar(select(func.count()).select_from(UserRow)):
        return None
    return create_user(session, ADMIN, is_admin=True)[1]


def authenticate(session: Session, token: str) -> UserRow:
    row = session.scalar(select(UserRow).where(UserRow.token_hash == hash_token(token)))
    if row is None or row.removed_at is not None:
        raise Unauthorized("the token is not valid; check TASKYARD_TOKEN")
    check_expiry(row)
    return row


def check_expiry(row: UserRow) -> None:
    if row.token_expires_at is not None and row.token_expires_at <= utcnow():
        raise Unauthorized("the token has expired; ask an admin for a new one (taskyard users rotate-token)")


def list_users(session: Session) -> list[UserRow]:
    query = select(UserRow).where(UserRow.removed_at.is_(None)).order_by(UserRow.id)
    return list(session.scalars(query))


def get_user(session: Session, name: str) -> UserRow:
    row = session.scalar(select(UserRow).where(UserRow.name == name, UserRow.removed_at.is_(None)))
    if row is None:
        raise NotFound(f"no user {name!r}")
    return row


def remove_user(session: Session, caller: UserRow, name: str) -> UserRow:
    """Remove ``name``: its token stops working and it leaves its groups; its tasks stay, still its own."""
    row = get_user(session, name)
    if row.id == caller.id:
        raise Conflict("you cannot remove yourself; ask another admin", field="name")
    session.execute(delete(GroupMemberRow).where(GroupMemberRow.user_id == row.id))
    row.removed_at = utcnow()
    row.token_hash = hash_token(new_token())  # nothing known matches it any more
    return row


def rotate_token(
    session: Session, caller: UserRow, name: str, *, expires_in: float | None = None
) -> tuple[UserRow, str]:
    """Give ``name`` a new token (the old one stops working); an admin may do it for anyone."""
    if name != caller.name and not caller.is_admin:
        raise Forbidden("only an admin can change another user's token")
    row = get_user(session, name)
    token = new_token()
    row.token_hash, row.token_expires_at = hash_token(token), expiry(expires_in)
    return row, token
