"""Secrets: personal ones, their user's alone, and shared ones, made by an admin for every user's tasks.

Values are stored sealed by the vault (:mod:`taskyard.server.vault`). They are opened only to
answer the user they belong to and to hand a task's values to its agent (:func:`resolve`):
never into a task's spec, a log or an error message. Nobody, an admin neither, lists, reads or
uses another user's personal secret; to anyone else it does not exist.

A task names its secrets in its worker config: ``personal_secrets`` and ``shared_secrets``
(``"NAME"`` or ``"NAME:ENV_NAME"``) become environment variables of the task, and a
``GitConfig.secret_name`` (the user's secret of that name, else the shared one) the token of
its clone. Submission checks that each exists (:func:`check_task_config`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from taskyard.config import WorkerConfig, secret_ref
from taskyard.errors import ConfigError, Conflict, Forbidden, InvalidInput, NotFound
from taskyard.models import KeyRotation, SecretInfo, SecretValue, check_id
from taskyard.server.db.models import CallbackTargetRow, SecretRow, SigningSecretRow, UserRow, WorkerCommandRow, utcnow
from taskyard.server.db.session import transaction
from taskyard.server.vault import KeyUnknown, Vault

_ENV_NAME_START = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_"
_ENV_NAME_CHARS = set(_ENV_NAME_START + "0123456789")


class SecretUnavailable(Conflict):
    """A secret a task was submitted with is gone, or cannot be opened with the vault's keys."""

    code = "secret_unavailable"


def _owner(user: UserRow, shared: bool) -> int | None:
    return None if shared else user.id


def _find(session: Session, owner: int | None, name: str, *, for_update: bool = False) -> SecretRow | None:
    query = select(SecretRow).where(SecretRow.name == name)
    query = query.where(SecretRow.user_id.is_(None) if owner is None else SecretRow.user_id == owner)
    return session.scalar(query.with_for_update() if for_update else query)


def _kind(shared: bool) -> str:
    return "shared" if shared else "personal"


def _check_name(name: str) -> str:
    try:
        return check_id(name, "secret name")
    except ValueError as exc:
        raise InvalidInput(str(exc), field="name") from None


# -- a user's own -------------------------------------------------------------------------------------


def put_secret(
    session: Session, vault: Vault, user: UserRow, name: str, value: str, *, shared: bool = False
) -> tuple[SecretRow, bool]:
    """Create or replace a secret: ``(row, created)``. Shared ones are an admin's to set."""
    _check_name(name)
    if shared and not user.is_admin:
        raise Forbidden("only an admin can set a shared secret")
    if "\0" in value:
        raise InvalidInput("a secret's value must not contain a NUL character", field="value")
    token, sealed_by = vault.seal(value)
    row = _find(session, _owner(user, shared), name, for_update=True)
    if row is not None:
        row.value, row.key_id, row.updated_at = token, sealed_by, utcnow()
        return row, False
    row = SecretRow(name=name, user_id=_owner(user, shared), value=token, key_id=sealed_by)
    row.created_at = row.updated_at = utcnow()
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:  # the same name, made at the same moment by another request
        raise Conflict(f"{_kind(shared)} secret {name!r} was just made by another request; set it again") from None
    return row, True


def get_secret(
    session: Session, vault: Vault, user: UserRow, name: str, *, shared: bool = False
) -> tuple[SecretRow, str]:
    """``(row, value)`` of the user's secret ``name``, else of the shared one (only that with ``shared``)."""
    row = None if shared else _find(session, user.id, name)
    row = row or _find(session, None, name)
    if row is None:
        raise NotFound(f"no {'shared ' if shared else ''}secret {name!r}")
    return row, _open(vault, row)


def delete_secret(session: Session, user: UserRow, name: str, *, shared: bool = False) -> None:
    """Delete the user's secret ``name`` (the shared one with ``shared``: an admin's to delete)."""
    if shared and not user.is_admin:
        raise Forbidden("only an admin can delete a shared secret")
    row = _find(session, _owner(user, shared), name, for_update=True)
    if row is None:
        raise NotFound(f"no {_kind(shared)} secret {name!r}")
    session.delete(row)


def list_secrets(session: Session, user: UserRow) -> list[SecretRow]:
    """The user's own secrets, then the shared ones, each by name."""
    mine = (SecretRow.user_id == user.id) | SecretRow.user_id.is_(None)
    query = select(SecretRow).where(mine).order_by(SecretRow.user_id.is_(None), SecretRow.name)
    return list(session.scalars(query))


def to_info(row: SecretRow, now: datetime | None = None) -> SecretInfo:
    age = (now or utcnow()) - row.updated_at
    return SecretInfo(
        name=row.name,
        shared=row.user_id is None,
        created_at=row.created_at,
        updated_at=row.updated_at,
        age_days=max(0, age.days),
    )


def to_value(row: SecretRow, value: str) -> SecretValue:
    return SecretValue(**to_info(row).model_dump(), value=value)


def _open(vault: Vault, row: SecretRow) -> str:
    try:
        return vault.open(row.value, row.key_id)
    except KeyUnknown as exc:
        raise SecretUnavailable(f"{_kind(row.user_id is None)} secret {row.name!r} cannot be read: {exc}") from None


# -- what tasks name ----------------------------------------------------------------------------------


class _Ref(NamedTuple):
    """One secret a worker config names, and where it goes."""

    shared: bool | None  # None: the user's, else the shared one (a git secret_name)
    name: str
    env: str | None  # the task's variable; None for a git token
    field: str
    git: int | None = None  # the index of the git config whose token it is


def _refs(config: WorkerConfig) -> Iterator[_Ref]:
    for shared, refs in ((False, config.personal_secrets), (True, config.shared_secrets)):
        kind = "shared_secrets" if shared else "personal_secrets"
        for ref in refs or ():
            name, env = secret_ref(ref)
            yield _Ref(shared, name, env, f"worker_config.{kind}")
    for index, repo in enumerate(config.git_configs or ()):
        if repo.secret_name:
            yield _Ref(None, repo.secret_name, None, f"worker_config.git_configs.{index}.secret_name", index)


def check_task_config(session: Session, user: UserRow, config: WorkerConfig) -> None:
    """Refuse (InvalidInput naming it) a secret the user may not use, or a variable it cannot be."""
    variables = dict.fromkeys(config.env_variables or (), "env_variables")
    for ref in _refs(config):
        if _lookup(session, user.id, ref) is None:
            raise InvalidInput(_missing(ref, user), field=ref.field)
        if ref.env is not None:
            _check_variable(ref, variables)


def check_pool_config(session: Session, config: WorkerConfig) -> None:
    """A pool serves every user: it may name shared secrets (and git secrets) only, and existing ones."""
    if config.personal_secrets:
        name = secret_ref(config.personal_secrets[0])[0]
        raise InvalidInput(
            f"a pool's worker config cannot name personal secrets (such as {name!r}): every user's tasks "
            "run in it; name shared_secrets, or personal ones in each task's own worker config",
            field="worker_config.personal_secrets",
        )
    variables = dict.fromkeys(config.env_variables or (), "env_variables")
    for ref in _refs(config):
        if _find(session, None, ref.name) is None:
            raise InvalidInput(f"no shared secret {ref.name!r}; an admin makes it with `taskyard secrets set "
                               f"{ref.name} --shared`", field=ref.field)
        if ref.env is not None:
            _check_variable(ref, variables)


def _lookup(session: Session, user_id: int, ref: _Ref) -> SecretRow | None:
    if ref.shared is None:
        return _find(session, user_id, ref.name) or _find(session, None, ref.name)
    return _find(session, None if ref.shared else user_id, ref.name)


def _missing(ref: _Ref, user: UserRow) -> str:
    if ref.shared:
        return f"no shared secret {ref.name!r}; an admin makes it with `taskyard secrets set {ref.name} --shared`"
    mine = "of yours" if ref.shared is False else "of yours, nor a shared one,"
    return (
        f"no secret {ref.name!r} {mine} (user {user.name}); make it with `taskyard secrets set {ref.name}` "
        "or taskyard.vault.create_or_update_secret"
    )


def _check_variable(ref: _Ref, seen: dict[str, str]) -> None:
    assert ref.env is not None
    if not _is_env_name(ref.env):
        raise InvalidInput(
            f"secret {ref.name!r} cannot be an environment variable under its own name; "
            f"name one for it: '{ref.name}:ENV_NAME'",
            field=ref.field,
        )
    other = seen.setdefault(ref.env, f"secret {ref.name!r}")
    if other != f"secret {ref.name!r}":
        raise InvalidInput(f"{ref.env} would be set both by {other} and by secret {ref.name!r}", field=ref.field)


def _is_env_name(name: str) -> bool:
    return bool(name) and name[0] in _ENV_NAME_START and set(name) <= _ENV_NAME_CHARS


@dataclass
class Resolved:
    """A task's secrets, opened: its variables, and each git config's token (None: it names none)."""

    env: dict[str, str] = field(default_factory=dict, repr=False)
    git_tokens: list[str | None] = field(default_factory=list, repr=False)


def resolve(session: Session, vault: Vault, user_id: int, config: WorkerConfig) -> Resolved:
    """Open the secrets ``config`` names for a task of ``user_id``; SecretUnavailable if one is gone."""
    resolved = Resolved(git_tokens=[None] * len(config.git_configs or ()))
    for ref in _refs(config):
        row = _lookup(session, user_id, ref)
        if row is None:
            raise SecretUnavailable(f"secret {ref.name!r} was deleted after the task was submitted")
        value = _open(vault, row)
        if ref.git is not None:
            resolved.git_tokens[ref.git] = value
        else:
            assert ref.env is not None  # every other secret is a variable
            resolved.env[ref.env] = value
    return resolved


# -- keys ---------------------------------------------------------------------------------------------


#: the tables of values sealed by the vault: each has ``value`` and ``key_id`` (None where no value is kept)
SEALED = (
    (SecretRow, SecretRow.value, SecretRow.key_id),
    (SigningSecretRow, SigningSecretRow.value, SigningSecretRow.key_id),
    (CallbackTargetRow, CallbackTargetRow.token, CallbackTargetRow.key_id),
)
#: values sealed for a few minutes at most (commands to kept workers on their way): sealed again by a
#: rotation, so that it does not lose them, but no reason to refuse a start (an unreadable one times out)
IN_FLIGHT = (
    (WorkerCommandRow, WorkerCommandRow.order, WorkerCommandRow.order_key),
    (WorkerCommandRow, WorkerCommandRow.answer, WorkerCommandRow.answer_key),
)


def reseal(session: Session, vault: Vault) -> int:
    """Seal again under the vault's first key what an older key it holds sealed; return how many."""
    older = [key for key in vault.key_ids() if key != vault.key_id]
    if not older:
        return 0
    count = 0
    for model, value, key_id in SEALED + IN_FLIGHT:
        for row in session.scalars(select(model).where(key_id.in_(older)).with_for_update()):
            sealed, key = vault.seal(vault.open(getattr(row, value.key), getattr(row, key_id.key)))
            setattr(row, value.key, sealed)
            setattr(row, key_id.key, key)
            count += 1
    return count


def unknown_keys(session: Session, vault: Vault) -> dict[str, int]:
    """How many sealed values each key this vault does not hold has sealed (none, normally)."""
    counts: dict[str, int] = {}
    for _model, _value, key_id in SEALED:
        query = select(key_id, func.count()).where(key_id.is_not(None), key_id.not_in(vault.key_ids()))
        for key, count in session.execute(query.group_by(key_id)):
            counts[str(key)] = counts.get(str(key), 0) + count
    return counts


def rotate_key(sessions: sessionmaker[Session], vault: Vault) -> KeyRotation:
    """A new key for the key file; every value sealed again under it; then the old key removed."""
    if vault.from_env:
        raise Conflict(
            "the vault key comes from TASKYARD_VAULT_KEY, so it is not rotated here: put a new key first in "
            "that variable (TASKYARD_VAULT_KEY=NEW,OLD) and restart the server, which re-encrypts every secret "
            "under NEW at start; then remove OLD from it"
        )
    with vault.rotating():
        vault.add_key()
        resealed = sum(_reseal_until_done(sessions, vault))
        vault.drop_old_keys()
    return KeyRotation(key_id=vault.key_id, resealed=resealed)


def _reseal_until_done(sessions: sessionmaker[Session], vault: Vault) -> Iterable[int]:
    # A value sealed under the old key by a request that began before the new key came in may
    # commit after a pass: passes go on until one finds nothing left.
    while True:
        with transaction(sessions) as session:
            count = reseal(session, vault)
        yield count
        if count == 0:
            return


def settle_keys(sessions: sessionmaker[Session], vault: Vault) -> None:
    """At start: refuse to run without a key the database needs; finish a key change left half done."""
    with transaction(sessions) as session:
        unknown = unknown_keys(session, vault)
        if unknown:
            raise ConfigError(_unknown_keys_message(unknown, vault))
        reseal(session, vault)
    vault.drop_old_keys()


def _unknown_keys_message(unknown: dict[str, int], vault: Vault) -> str:
    ids = ", ".join(f"{key} ({count} secret{'s' if count > 1 else ''})" for key, count in unknown.items())
    source = "TASKYARD_VAULT_KEY" if vault.from_env else str(vault.path)
    return (
        f"the database holds secrets encrypted under vault keys this server does not have: {ids}; "
        f"it has {', '.join(vault.key_ids())} from {source}. Give it the key they were made with (the vault.key "
        "file that went with this database, or TASKYARD_VAULT_KEY as it was); if that key is lost for good, "
        "delete those secrets from the database's secrets table"
    )
