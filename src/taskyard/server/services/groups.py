"""Groups of users, made and filled by admins. A pool shared with ``group:NAME`` is usable by the members of NAME.

Membership is read from the database whenever a pool's use is checked (nothing of it is cached), so
a user taken out of a group, or a deleted group, stops giving access at once, on every server process.
Deleting a group also takes ``group:NAME`` out of the pools made over the API; a pool the configuration
file declares keeps what the file says.
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from taskyard.errors import Conflict, NotFound
from taskyard.models import GROUP, GroupInfo, PoolSpec
from taskyard.server.db.models import GroupMemberRow, GroupRow, PoolRow, UserRow, utcnow
from taskyard.server.services import users as user_service


def create_group(session: Session, name: str) -> GroupRow:
    if session.scalar(select(GroupRow.id).where(GroupRow.name == name)) is not None:
        raise Conflict(f"group {name!r} already exists", field="name")
    row = GroupRow(name=name, created_at=utcnow())
    session.add(row)
    session.flush()
    return row


def get_group(session: Session, name: str) -> GroupRow:
    row = session.scalar(select(GroupRow).where(GroupRow.name == name))
    if row is None:
        raise NotFound(f"no group {name!r}")
    return row


def visible_group(session: Session, caller: UserRow, name: str) -> GroupRow:
    """The group called ``name`` if ``caller`` is an admin or one of its members; to anyone else it does not exist."""
    row = session.scalar(select(GroupRow).where(GroupRow.name == name))
    if row is None or not (caller.is_admin or _is_member(session, row, caller)):
        raise NotFound(f"no group {name!r}")
    return row


def list_groups(session: Session, caller: UserRow) -> list[GroupRow]:
    """Every group for an admin; the caller's own groups for anyone else."""
    query = select(GroupRow).order_by(GroupRow.name)
    if not caller.is_admin:
        query = query.join(GroupMemberRow).where(GroupMemberRow.user_id == caller.id)
    return list(session.scalars(query))


def add_member(session: Session, name: str, user_name: str) -> GroupRow:
    """Put a user in a group; nothing changes if they are in it already."""
    row, user = get_group(session, name), user_service.get_user(session, user_name)
    if not _is_member(session, row, user):
        session.add(GroupMemberRow(group_id=row.id, user_id=user.id))
        session.flush()
    return row


def remove_member(session: Session, name: str, user_name: str) -> GroupRow:
    """Take a user out of a group: the pools shared with the group are no longer theirs to use, at once."""
    row, user = get_group(session, name), user_service.get_user(session, user_name)
    if not _is_member(session, row, user):
        raise NotFound(f"user {user_name!r} is not in group {name!r}")
    session.execute(delete(GroupMemberRow).where(GroupMemberRow.group_id == row.id, GroupMemberRow.user_id == user.id))
    return row


def delete_group(session: Session, name: str) -> None:
    """Delete a group: its members lose the pools shared with it, and the pools made over the API forget it."""
    row = get_group(session, name)
    session.execute(delete(GroupMemberRow).where(GroupMemberRow.group_id == row.id))
    _unshare(session, GROUP + name)
    session.delete(row)


def _unshare(session: Session, sharee: str) -> None:
    for pool in session.scalars(select(PoolRow).where(PoolRow.user_id.is_not(None))):
        spec = PoolSpec.model_validate_json(pool.spec)
        if sharee in spec.shared_with:
            kept = [name for name in spec.shared_with if name != sharee]
            pool.spec = spec.model_copy(update={"shared_with": kept}).model_dump_json()


def _is_member(session: Session, group: GroupRow, user: UserRow) -> bool:
    member = select(GroupMemberRow).where(GroupMemberRow.group_id == group.id, GroupMemberRow.user_id == user.id)
    return session.scalar(member) is not None


def names_of(session: Session, user: UserRow) -> frozenset[str]:
    """The names of the groups ``user`` is in."""
    query = select(GroupRow.name).join(GroupMemberRow).where(GroupMemberRow.user_id == user.id)
    return frozenset(session.scalars(query))


def missing(session: Session, names: Iterable[str]) -> list[str]:
    """Those of ``names`` that are no group, sorted."""
    wanted = set(names)
    found = set(session.scalars(select(GroupRow.name).where(GroupRow.name.in_(wanted)))) if wanted else set()
    return sorted(wanted - found)


def to_info(session: Session, row: GroupRow) -> GroupInfo:
    query = (
        select(UserRow.name)
        .join(GroupMemberRow, GroupMemberRow.user_id == UserRow.id)
        .where(GroupMemberRow.group_id == row.id)
        .order_by(UserRow.name)
    )
    return GroupInfo(name=row.name, members=list(session.scalars(query)), created_at=row.created_at)
