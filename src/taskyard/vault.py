"""The vault, with the Practicus AI names: ``taskyard.vault.create_or_update_secret(name, key)``...

A secret is yours alone unless an admin made it ``shared`` for every user's tasks. A task gets
secrets as environment variables through ``WorkerConfig(personal_secrets=[...],
shared_secrets=[...])`` (``"NAME"`` or ``"NAME:ENV_NAME"``), and a git clone its token through
``GitConfig(secret_name=...)``. The server keeps values encrypted; what a task prints of them is
masked in its logs.
"""

from __future__ import annotations

from taskyard.client import Client, default_client
from taskyard.models import SecretInfo


def create_or_update_secret(name: str, key: str, shared: bool = False, client: Client | None = None) -> None:
    """Store ``key`` as the value of your secret ``name`` (of the shared one with ``shared``: admins only)."""
    (client or default_client()).put_secret(name, key, shared=shared)


def get_secret(name: str, shared: bool = False, client: Client | None = None) -> tuple[str, int]:
    """``(value, age_days)`` of your secret ``name``, else of the shared one (only that with ``shared``).

    ``age_days`` counts whole days since the value was last set.
    """
    secret = (client or default_client()).secret(name, shared=shared)
    return secret.value, secret.age_days


def delete_secret(name: str, shared: bool = False, client: Client | None = None) -> None:
    """Delete your secret ``name`` (the shared one with ``shared``: admins only)."""
    (client or default_client()).delete_secret(name, shared=shared)


def list_secrets(client: Client | None = None) -> list[SecretInfo]:
    """Your secrets, then the shared ones: each with its ``name``, ``shared`` and ``age_days``, never a value."""
    return (client or default_client()).secrets()


__all__ = ["create_or_update_secret", "delete_secret", "get_secret", "list_secrets"]
