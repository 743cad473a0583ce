"""What local workers' agents are told about Python environments (see ``taskyard.agent.envs``).

Named virtual environments are the folders of ``TASKYARD_VENVS_DIR`` (``~/.venv`` of the user the
server runs as); environments built from requirements are cached in ``<TASKYARD_HOME>/envs``, at
most ``TASKYARD_ENV_CACHE_MB`` of them, and built with the uv that comes with taskyard (the ``uv``
package), or one on ``PATH``; without either, with ``venv`` and ``pip``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from taskyard import settings
from taskyard.agent.envs import named_venvs


def find_uv() -> str | None:
    """uv's absolute path: the ``uv`` package's binary, else the one on ``PATH``; None without either."""
    try:
        from uv import find_uv_bin

        return str(Path(find_uv_bin()).resolve())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        return str(Path(found).resolve()) if found else None


def venvs() -> dict[str, str]:
    """The named virtual environments tasks may ask for: name -> folder."""
    return named_venvs(settings.venvs_dir())


def agent_settings(data_dir: Path, uv: str | None) -> dict:
    """The ``python`` part of an agent's settings (read at each launch)."""
    return {"venvs": str(settings.venvs_dir()), "cache": str(data_dir / "envs"), "cache_mb": settings.env_cache_mb(),
            "uv": uv}
