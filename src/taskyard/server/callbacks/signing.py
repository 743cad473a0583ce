"""Each user's callback signing secret: made on first use, sealed by the vault, never stored in clear."""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from taskyard.server.db.models import SigningSecretRow
from taskyard.server.vault import Vault


def secret_of(session: Session, vault: Vault, user_id: int) -> str:
    """The signing secret of ``user_id``, made now if the user has none yet."""
    row = session.get(SigningSecretRow, user_id)
    if row is None:
        row = _make(session, vault, user_id)
    return vault.open(row.value, row.key_id)


def _make(session: Session, vault: Vault, user_id: int) -> SigningSecretRow:
    value, key = vault.seal(secrets.token_urlsafe(32))
    row = SigningSecretRow(user_id=user_id, value=value, key_id=key)
    try:
        with session.begin_nested():  # made at the same time by another request: keep that one
            session.add(row)
            session.flush()
    except IntegrityError:
        winner = session.get(SigningSecretRow, user_id, populate_existing=True)
        assert winner is not None  # the row that won the race
        return winner
    return row
