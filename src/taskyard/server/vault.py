"""The vault's keys: secret values are sealed with Fernet under a key kept apart from the database.

The key is ``TASKYARD_VAULT_KEY`` (``ServerConfig.vault_key``) when it is set, and otherwise the
file ``vault.key`` in the server's home (``ServerConfig.data_dir``), made on first start and
readable by the server's user only (0600). A copy of the database alone reveals no value.

Several keys may be in use at once (one a line in the file, comma-separated in the variable):
the first seals, every one opens. Each stored value names the key that sealed it by a
fingerprint (:func:`key_id`, 16 hex digits of the key's SHA-256, which tells nothing of the key),
so the values a key change leaves behind can be found and sealed again.

Rotation (of a key file only) writes ``NEW`` and the old keys first, then the values are sealed
again under ``NEW``, then the file is written with ``NEW`` alone. Each write replaces the file
atomically, so a crash at any point leaves every value readable; the next start finishes the job.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from taskyard.errors import ConfigError

KEY_FILE = "vault.key"


class KeyUnknown(Exception):
    """A value was sealed under a key this vault does not hold, or does not open with it."""


def key_id(key: str) -> str:
    """The fingerprint stored next to each value sealed under ``key``."""
    return hashlib.sha256(key.encode("ascii")).hexdigest()[:16]


class Vault:
    """Seals and opens secret values. Thread-safe; one rotation at a time (:meth:`rotating`)."""

    def __init__(self, keys: list[str], path: Path | None) -> None:
        self.path = path  # the key file, or None when the keys come from TASKYARD_VAULT_KEY
        self._keys: list[str] = []
        self._fernets: dict[str, Fernet] = {}
        self._rotation = threading.Lock()
        self._use(keys)

    @classmethod
    def load(cls, data_dir: Path, given: str | None) -> Vault:
        """The vault of ``given`` keys (TASKYARD_VAULT_KEY), else of ``data_dir``'s key file, made if missing."""
        if given is not None:
            return cls([key.strip() for key in given.split(",") if key.strip()], None)
        path = data_dir / KEY_FILE
        if not path.exists():
            _write_new(path, Fernet.generate_key().decode())
        return cls(_read(path), path)

    @property
    def from_env(self) -> bool:
        return self.path is None

    @property
    def key_id(self) -> str:
        """The id of the key that seals new values."""
        return key_id(self._keys[0])

    def key_ids(self) -> list[str]:
        return [key_id(key) for key in self._keys]

    def seal(self, value: str) -> tuple[bytes, str]:
        """``(token, key id)``: ``value`` encrypted and authenticated under the first key."""
        keys = self._keys
        fernet = self._fernets[key_id(keys[0])]
        return fernet.encrypt(value.encode("utf-8")), key_id(keys[0])

    def open(self, token: bytes, sealed_by: str) -> str:
        """The value sealed in ``token`` under key ``sealed_by``; KeyUnknown if this vault cannot open it."""
        fernet = self._fernets.get(sealed_by)
        if fernet is None:
            raise KeyUnknown(f"it was encrypted under vault key {sealed_by}, which this server does not hold")
        try:
            return fernet.decrypt(token).decode("utf-8")
        except InvalidToken:
            raise KeyUnknown(f"it does not decrypt with vault key {sealed_by} (altered in the database?)") from None

    # -- rotation ----------------------------------------------------------------------------------

    @contextlib.contextmanager
    def rotating(self) -> Iterator[None]:
        """Hold this while rotating: a second rotation at the same time waits for the first."""
        with self._rotation:
            yield

    def add_key(self) -> str:
        """Make a new key, write it first in the key file (older keys kept after it); return its id."""
        if self.path is None:
            raise RuntimeError("keys given by TASKYARD_VAULT_KEY are changed in that variable")
        keys = [Fernet.generate_key().decode(), *self._keys]
        _replace(self.path, keys)
        self._use(keys)
        return key_id(keys[0])

    def drop_old_keys(self) -> None:
        """Keep only the first key, in memory and in the key file (nothing to do for TASKYARD_VAULT_KEY)."""
        if self.path is None or len(self._keys) == 1:
            return
        keys = self._keys[:1]
        _replace(self.path, keys)
        self._use(keys)

    def _use(self, keys: list[str]) -> None:
        if not keys:
            raise ConfigError("the vault has no key")
        fernets = {key_id(key): _fernet(key, self.path) for key in keys}
        self._fernets = {**self._fernets, **fernets}  # readers see the old keys until the new list is in
        self._keys = keys
        self._fernets = fernets


def _fernet(key: str, path: Path | None) -> Fernet:
    try:
        return Fernet(key)
    except ValueError:
        where = str(path) if path is not None else "TASKYARD_VAULT_KEY"
        raise ConfigError(f"{where}: holds something that is not a Fernet key") from None


def _read(path: Path) -> list[str]:
    if path.stat().st_mode & 0o077:
        path.chmod(0o600)  # the key is the server user's alone
    keys = [line.strip() for line in path.read_text(encoding="ascii").splitlines() if line.strip()]
    if not keys:
        raise ConfigError(f"{path}: the vault key file is empty; restore it, or remove it to start a new vault")
    return keys


def _write_new(path: Path, key: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="ascii") as out:
        out.write(key + "\n")
        out.flush()
        os.fsync(out.fileno())


def _replace(path: Path, keys: list[str]) -> None:
    """Write ``keys`` to ``path`` atomically: a reader sees the old file or the new one, never a part."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    _write_new(tmp, "\n".join(keys))
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
