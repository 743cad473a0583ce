"""``TASKYARD_*`` settings. Each is read when it is used, never frozen at import.

=============================  ==============================================================
``TASKYARD_HOME``              where the embedded server keeps its state (``~/.taskyard``)
``TASKYARD_URL``               a control plane instead of the embedded one (servers of one database: comma-separated)
``TASKYARD_TOKEN``             the bearer token for ``TASKYARD_URL``
``TASKYARD_CONFIG``            the server's TOML configuration file (read by ``taskyard.server.config``)
``TASKYARD_DB_URL``            the server's database (default: SQLite under the home folder)
``TASKYARD_MAX_WORKERS``       workers running at once in the default pool (default: cores)
``TASKYARD_WARM_WORKERS``      started workers kept waiting for their first task (default 2)
``TASKYARD_SANDBOX``           how the local backend isolates tasks: auto, required or off (server config)
``TASKYARD_GPUS``              GPU ids workers may be given, e.g. ``0,1`` (server config; default: nvidia-smi -L)
``TASKYARD_VAULT_KEY``         the vault's Fernet key(s), first one encrypting (server config; default: vault.key)
``TASKYARD_MAX_UPLOAD_MB``     the largest task folder a submission may upload (default 100)
``TASKYARD_MAX_UNPACK_MB``     the most a task folder may unpack to on its worker (default 10 x the upload limit)
``TASKYARD_MAX_OUTPUTS_MB``    the most a task's outputs may pack to (default 10 x the upload limit); past it,
                               files are left out and the task's status message names those kept
``TASKYARD_KILL_GRACE``        seconds between SIGTERM and SIGKILL when a task is stopped (5)
``TASKYARD_HEARTBEAT_TIMEOUT`` seconds of agent silence before a worker counts as lost (10)
``TASKYARD_PROVISION_TIMEOUT`` seconds a new worker may take to call in before it is replaced (60)
``TASKYARD_LOG_CAP_MB``        the most log a task keeps; the rest is cut with a marker (100)
``TASKYARD_VENVS_DIR``         the named Python virtual environments of local workers (default ``~/.venv``)
``TASKYARD_TOKEN_CACHE_SECONDS`` how long a server trusts a token it has checked before asking the
                               database again (1); changes made through the same server apply at once
``TASKYARD_SERVER_LEASE_SECONDS`` how long a server's hold on its database outlives it, should it die (15)
``TASKYARD_CLAIM_SECONDS``     how long a server's claim of a task for a worker it is starting holds; past it, with
                               the worker never started nor heard from, another server takes the task back (60)
``TASKYARD_ROSTER_SECONDS``    how often a server on PostgreSQL says in the ``servers`` table that it lives (3);
                               one silent for 4 times that is left out of the URLs agents are given
``TASKYARD_ADMIN_TOKEN``       the admin's token, for a server that should not make one (``taskyard server``)
``TASKYARD_ENV_CACHE_MB``      the most the cached Python environments built from requirements
                               take (5000); the least recently used are removed past it
=============================  ==============================================================
"""

from __future__ import annotations

import os
from pathlib import Path


def _get(name: str, default: str) -> str:
    return os.environ.get(f"TASKYARD_{name}", default)


def home() -> Path:
    return Path(_get("HOME", str(Path.home() / ".taskyard"))).expanduser()


def server_url() -> str | None:
    return os.environ.get("TASKYARD_URL") or None


def token() -> str | None:
    return os.environ.get("TASKYARD_TOKEN") or None


def db_url(data_dir: Path | None = None) -> str:
    default = f"sqlite:///{(data_dir or home()) / 'taskyard.db'}"
    return _get("DB_URL", default)


def max_workers() -> int:
    return int(_get("MAX_WORKERS", str(os.cpu_count() or 1)))


def warm_workers() -> int:
    return int(_get("WARM_WORKERS", "2"))


def max_upload_bytes() -> int:
    return int(float(_get("MAX_UPLOAD_MB", "100")) * 1024 * 1024)


def max_unpack_bytes() -> int:
    return _megabytes("MAX_UNPACK_MB", 10 * max_upload_bytes())


def max_outputs_bytes() -> int:
    return _megabytes("MAX_OUTPUTS_MB", 10 * max_upload_bytes())


def _megabytes(name: str, default: int) -> int:
    given = os.environ.get(f"TASKYARD_{name}")
    return default if not given else int(float(given) * 1024 * 1024)


def kill_grace() -> float:
    return float(_get("KILL_GRACE", "5"))


def heartbeat_timeout() -> float:
    return float(_get("HEARTBEAT_TIMEOUT", "10"))


def provision_timeout() -> float:
    return float(_get("PROVISION_TIMEOUT", "60"))


def log_cap_bytes() -> int:
    return int(float(_get("LOG_CAP_MB", "100")) * 1024 * 1024)


def venvs_dir() -> Path:
    """Where ``python_venv_name`` finds a local worker's virtual environments: ``~/.venv`` of the server's user."""
    return Path(_get("VENVS_DIR", "~/.venv")).expanduser()


def env_cache_mb() -> float:
    return float(_get("ENV_CACHE_MB", "5000"))


def token_cache_seconds() -> float:
    return float(_get("TOKEN_CACHE_SECONDS", "1"))


def admin_token() -> str | None:
    return os.environ.get("TASKYARD_ADMIN_TOKEN") or None


def garbage_seconds() -> float:
    """Seconds between asking each backend to remove what it holds for workers that are gone."""
    return float(_get("GARBAGE_SECONDS", "60"))


def server_lease_seconds() -> float:
    return float(_get("SERVER_LEASE_SECONDS", "15"))


def claim_seconds() -> float:
    return float(_get("CLAIM_SECONDS", "60"))


def roster_seconds() -> float:
    return float(_get("ROSTER_SECONDS", "3"))
