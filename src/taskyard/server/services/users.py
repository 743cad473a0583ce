"""Users and their bearer tokens. Only token hashes are stored."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from taskyard.errors import Conflict, Unauthorized
from taskyard.server.db.models import UserRow


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "ty_" + secrets.token_urlsafe(32)


def create_user(session: Session, name: str, *, is_admin: bool = False, token: str | None = None):
    """Create a user; return ``(row, token)``. The token is shown once and never stored."""
    if session.scalar(select(UserRow).where(UserRow.name == name)) is not None:
        raise Conflict(f"user {name!r} already exists", field="name")
    token = token or new_token()
    row = UserRow(name=name, token_hash=hash_token(token), is_admin=is_admin)
    session.add(row)
    session.flush()
    return row, token


def ensure_admin(session: Session, name: str, token: str) -> UserRow:
    """Make sure an admin called ``name`` exists with ``token`` (the embedded server's own user)."""
    row = session.scalar(select(UserRow).where(UserRow.name == name))
    if row is None:
        return create_user(session, name, is_admin=True, token=token)[0]
    row.token_hash, row.is_admin = hash_token(token), True
    return row


def authenticate(session: Session, token: str) -> UserRow:
    row = session.scalar(select(UserRow).where(UserRow.token_hash == hash_token(token)))
    if row is None:
        raise Unauthorized("the token is not valid; check TASKYARD_TOKEN")
    return row


def list_users(session: Session) -> list[UserRow]:
    return list(session.scalars(select(UserRow).order_by(UserRow.id)))
