"""Worker configuration: what a task's worker looks like and what it gets at start.

``WorkerConfig`` mirrors ``practicuscore.WorkerConfig``, including its wire form. Only
``worker_image``, ``worker_size`` and ``additional_params`` are written; everything else
(env variables, personal and shared secrets, git configs, startup script, log levels) travels
inside ``additional_params`` as base64-encoded JSON, so a ``task_worker.json`` written by either
SDK reads the same in both.

Every field a Practicus ``WorkerConfig`` can hold is read, top-level or inside
``additional_params``. Those that mean nothing to a taskyard worker (:data:`NO_EFFECT_KEYS`) are
dropped, and named together in one :class:`NoEffectWarning`; the keys of a Practicus login
(:data:`IGNORED_KEYS`) are dropped silently. A key neither SDK knows is an error that names it.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import warnings
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import (
    BaseModel,
    Field,
    SerializationInfo,
    ValidationInfo,
    field_validator,
    model_serializer,
    model_validator,
)
from typing_extensions import TypedDict

from taskyard.agent.envs import requirement_problem
from taskyard.log import LEVEL_ENV, MODULES_LEVEL_ENV, level_name

#: a worker size's name; which sizes exist is the server's to say (``taskyard sizes``)
SIZE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,32}")
SIZE_NAME_RULE = "1-32 letters, digits, '-', '_' or '.'"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What a process may be started with (Linux: one string of at most 128 KiB, some 2 MiB in all, argv too).
ENV_NAME_MAX = 256
ENV_VALUE_MAX = 64 * 1024
ENV_TOTAL_MAX = 512 * 1024
_SECRET_REF = re.compile(r"(?P<name>[A-Za-z0-9_.-]+)(?::(?P<env>[A-Za-z_][A-Za-z0-9_]*))?")
_SCP_LIKE_URL = re.compile(r"[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+:\S.*")
_URL_SCHEMES = ("https://", "http://", "ssh://", "file://")

# Keys that travel inside ``additional_params``, in the order they are written.
EXTRA_KEYS = (
    "env_variables",
    "personal_secrets",
    "shared_secrets",
    "git_configs",
    "startup_script",
    "network",
    "python_requirements",
    "log_level",
    "modules_log_level",
)
# Keys of a Practicus login found in its worker files; they mean nothing here and are dropped.
IGNORED_KEYS = ("service_url", "email", "refresh_token")
# Practicus worker settings with no counterpart on a taskyard worker: read, dropped, and warned about.
NO_EFFECT_KEYS = (
    "service_type",
    "network_protocol",
    "distributed_config",
    "image_config",
    "bypass_ssl_verification",
    "interactive",
)


class NoEffectWarning(UserWarning):
    """A worker config gave Practicus settings that taskyard reads but does not act on."""


class WorkerConfigWire(TypedDict, total=False):
    """The written form of a ``WorkerConfig`` (``model_dump`` / ``model_dump_json``)."""

    worker_image: str | None
    worker_size: str | None
    additional_params: str | None


class GitConfig(BaseModel):
    """A git repository cloned into the task folder before the task runs."""

    model_config = {"use_attribute_docstrings": True, "extra": "forbid"}

    remote_url: str
    """Repository to clone: https://, http://, ssh://, file://, git@host:path or an absolute local path."""

    secret_name: str | None = None
    """Name of a secret holding the access token for the remote: one of yours, else a shared one."""

    username: str | None = None
    """Git user name for commits made by the task (the clone's ``user.name``).

    Also the user name that goes with the access token; ``x-access-token`` when not given."""

    email: str | None = None
    """Git user email for commits made by the task (the clone's ``user.email``)."""

    local_path: str | None = None
    """Where to clone, relative to the task folder (defaults to the repository name)."""

    branch: str | None = None
    """Branch to check out (defaults to the remote's default branch)."""

    fetch_depth: int | None = Field(default=None, ge=1)
    """Clone only this many recent commits (a full clone if not given)."""

    sparse_checkout_folders: list[str] | None = None
    """Check out only these folders (relative paths), and the files at the repository's top.

    A partial clone (``--filter=blob:none --sparse``) where the server allows it: the files of the
    other folders are not even downloaded."""

    save_secret: bool | None = None
    """True: the task's own git commands (fetch, pull, push) for this remote get the access token too.

    Through a credential helper in the task's ``$HOME/.gitconfig`` that reads the token from the
    task's ``TASKYARD_GIT_TOKEN_<n>`` variable (n: the repository's place in ``git_configs``, from 0);
    the token itself is written nowhere. Otherwise the task's git has no credential for it."""

    @field_validator("remote_url")
    @classmethod
    def _check_remote_url(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("remote_url must not be empty")
        if not _is_supported_url(value):
            raise ValueError(
                f"unsupported remote_url {value!r}; use https://, http://, ssh://, file://, "
                "git@host:path or an absolute local path"
            )
        return value

    @field_validator("local_path")
    @classmethod
    def _check_local_path(cls, value: str | None) -> str | None:
        if value is not None:
            _check_relative_path("local_path", value, "the task folder")
        return value

    @field_validator("sparse_checkout_folders")
    @classmethod
    def _check_sparse_checkout_folders(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("sparse_checkout_folders must name at least one folder")
        for folder in value or ():
            _check_relative_path("sparse_checkout_folders", folder, "the repository")
            if folder.startswith("-") or any(char in folder for char in "\0\n\r"):
                raise ValueError(f"sparse_checkout_folders has {folder!r}, which git cannot take as a folder")
        return value


def _check_relative_path(field: str, value: str, base: str) -> None:
    """Raise unless ``value`` is a non-empty path relative to ``base``, with no '..' in it."""
    if not value.strip():
        raise ValueError(f"{field} must not be empty")
    if PurePosixPath(value).is_absolute() or value.startswith("\\") or re.match(r"[A-Za-z]:", value):
        raise ValueError(f"{field} {value!r} must be relative to {base}")
    if ".." in re.split(r"[\\/]", value):
        raise ValueError(f"{field} {value!r} must not contain '..'")


def _in_task_folder(name: str) -> bool:
    """Is ``name`` a non-empty path relative to the task folder, without ``..``?"""
    path = PurePosixPath(name.replace("\\", "/"))
    return bool(name.strip()) and not path.is_absolute() and ".." not in path.parts and not re.match(r"[A-Za-z]:", name)


def _is_supported_url(url: str) -> bool:
    lowered = url.lower()
    for scheme in _URL_SCHEMES:
        if lowered.startswith(scheme):
            return len(url) > len(scheme)
    return url.startswith("/") or bool(_SCP_LIKE_URL.fullmatch(url))


class WorkerConfig(BaseModel):
    """The worker a task runs on, and what it gets at start (same wire form as Practicus AI)."""

    model_config = {"use_attribute_docstrings": True, "extra": "forbid"}

    worker_image: str | None = None
    """Container image of the worker; the server checks it against its catalog."""

    worker_size: str | None = None
    """A size the server offers (``taskyard sizes``), e.g. X-Small, Small, Medium, Large, X-Large.

    Matched in any letter case by the server, which stores the size's own spelling."""

    env_variables: dict[str, str | int | float | bool] | None = None
    """Environment variables set for the task; values keep their type here."""

    startup_script: str | None = None
    """Shell script run on the worker before the task starts."""

    git_configs: list[GitConfig] | None = None
    """Repositories cloned into the task folder before the task starts."""

    personal_secrets: list[str] | None = None
    """Your secrets given to the task as environment variables: ``"NAME"``, or ``"NAME:ENV_NAME"`` to rename."""

    shared_secrets: list[str] | None = None
    """Shared secrets (made by an admin) given to the task as environment variables, named as personal_secrets."""

    network: bool | None = None
    """False: the task runs with no network at all (an empty network namespace of its own).

    Only on a sandboxed worker; the git clones and the startup script before it keep the network."""

    python_requirements: list[str] | str | None = None
    """What the task's Python environment is built from: requirement lines (``["six==1.16.0"]``), or
    the name of a requirements file in the task folder (``"requirements.txt"``).

    A string is always a file name (a single requirement is a list of one). The environment is built
    with uv once per set of requirements and Python, cached on the worker's host, and read-only for
    the task; ``-r``, ``-c``, ``-e`` and local paths are not supported."""

    log_level: str | None = None
    """Level of ``taskyard.logger`` inside the task: DEBUG, INFO, WARNING, ERROR or CRITICAL (any case).

    Given to the task as ``TASKYARD_LOG_LEVEL``, which the logger reads when first used; INFO if not given."""

    modules_log_level: str | None = None
    """Level of the root logger inside the task, so of other modules' loggers that set none of their own.

    Given to the task as ``TASKYARD_MODULES_LOG_LEVEL``, applied when ``taskyard.logger`` is first used;
    the root logger is left alone if not given."""

    additional_params: str | None = None
    """Base64 JSON of env_variables, personal_secrets, shared_secrets, git_configs, startup_script, network,
    python_requirements, log_level and modules_log_level.

    Derived when writing and unpacked when reading: always None on an instance."""

    @model_validator(mode="before")
    @classmethod
    def _unpack_additional_params(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data
        data = {key: value for key, value in data.items() if key not in IGNORED_KEYS}
        packed = data.pop("additional_params", None)
        extras = {} if packed is None or packed == "" else _decode_additional_params(packed)
        _drop_no_effect_keys(data, extras)
        return _merge_extras(data, extras)

    @field_validator("worker_image")
    @classmethod
    def _check_worker_image(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(char.isspace() for char in value)):
            raise ValueError(f"worker_image {value!r} must be a non-empty name without whitespace")
        return value

    @field_validator("worker_size")
    @classmethod
    def _check_worker_size(cls, value: str | None) -> str | None:
        if value is not None and not SIZE_NAME.fullmatch(value):
            raise ValueError(f"worker_size {value!r} is not a size name; use {SIZE_NAME_RULE}")
        return value

    @field_validator("env_variables", mode="before")
    @classmethod
    def _check_env_variables(cls, value: Any) -> Any:
        if value is None:
            return None
        if not isinstance(value, Mapping):
            raise ValueError("env_variables must be a mapping of names to values")
        for name, item in value.items():
            _check_env_variable(name, item)
        total = sum(len(str(name)) + len(str(item)) + 2 for name, item in value.items())
        if total > ENV_TOTAL_MAX:
            raise ValueError(f"env_variables take {total} bytes in all, over the limit of {ENV_TOTAL_MAX}")
        return value

    @field_validator("personal_secrets", "shared_secrets")
    @classmethod
    def _check_secrets(cls, value: list[str] | None, info: ValidationInfo) -> list[str] | None:
        kind = "personal" if info.field_name == "personal_secrets" else "shared"
        for ref in value or ():
            if not _SECRET_REF.fullmatch(ref):
                raise ValueError(
                    f"invalid {kind} secret name {ref!r}; use NAME or NAME:ENV_NAME, NAME of letters, digits, "
                    "'_', '.', '-' and ENV_NAME of letters, digits and '_', not first a digit"
                )
        return value

    @field_validator("log_level", "modules_log_level")
    @classmethod
    def _check_log_level(cls, value: str | None, info: ValidationInfo) -> str | None:
        try:
            return None if value is None else level_name(value)
        except ValueError as exc:
            raise ValueError(f"{info.field_name}: {exc}") from None

    @field_validator("python_requirements")
    @classmethod
    def _check_python_requirements(cls, value: list[str] | str | None) -> list[str] | str | None:
        if isinstance(value, str) and not _in_task_folder(value):
            raise ValueError(f"python_requirements {value!r} must be a file name relative to the task folder")
        for line in value if isinstance(value, list) else ():
            problem = requirement_problem(line)
            if problem is not None:
                raise ValueError(f"python_requirements {line!r}: {problem}")
        return value

    @model_serializer(mode="plain")
    def _serialize(self, info: SerializationInfo) -> WorkerConfigWire:
        # Dump options are applied here: pydantic filters a plain serializer's output only through
        # its return type, and cannot know which of the packed fields were set.
        out: dict[str, Any] = {
            "worker_image": self.worker_image,
            "worker_size": self.worker_size,
            "additional_params": self._pack_extras(),
        }
        return _apply_dump_options(out, info, self._set_output_keys())

    def _set_output_keys(self) -> set[str]:
        keys = self.model_fields_set & {"worker_image", "worker_size"}
        if self.model_fields_set & set(EXTRA_KEYS):
            keys.add("additional_params")
        return keys

    def extras(self) -> dict[str, Any]:
        """The non-None values that travel inside ``additional_params``, as plain JSON data."""
        git_configs = None
        if self.git_configs is not None:
            git_configs = [git.model_dump(exclude_none=True) for git in self.git_configs]
        values = {
            "env_variables": self.env_variables,
            "personal_secrets": self.personal_secrets,
            "shared_secrets": self.shared_secrets,
            "git_configs": git_configs,
            "startup_script": self.startup_script,
            "network": self.network,
            "python_requirements": self.python_requirements,
            "log_level": self.log_level,
            "modules_log_level": self.modules_log_level,
        }
        return {key: value for key, value in values.items() if value is not None}

    def _pack_extras(self) -> str | None:
        extras = self.extras()
        if not extras:
            return None
        return base64.b64encode(json.dumps(extras).encode()).decode()

    def env_as_strings(self) -> dict[str, str]:
        """Env variables as the task sees them in ``os.environ``: each value through ``str()``.

        So ``123`` becomes ``"123"`` and ``True`` becomes ``"True"`` (not ``"true"``), just as
        ``os.environ["X"] = str(value)`` would store them in Python.
        """
        return {name: str(value) for name, value in (self.env_variables or {}).items()}

    def task_env(self) -> dict[str, str]:
        """The task's environment from this config: :meth:`env_as_strings`, plus the log levels given.

        ``log_level`` goes in as ``TASKYARD_LOG_LEVEL`` and ``modules_log_level`` as
        ``TASKYARD_MODULES_LOG_LEVEL``, over any env variable of those names.
        """
        levels = {LEVEL_ENV: self.log_level, MODULES_LEVEL_ENV: self.modules_log_level}
        return {**self.env_as_strings(), **{name: value for name, value in levels.items() if value is not None}}

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> WorkerConfig:
        """Read a worker config JSON file such as ``task_worker.json``."""
        return cls.model_validate_json(Path(path).read_text(encoding="utf-8"))


def worker_config_beside(folder: str | os.PathLike[str], file_name: str) -> WorkerConfig | None:
    """The worker config kept beside a task file, as Practicus and its Airflow DAGs find it.

    ``default_worker.json`` overridden key by key by ``<task>_worker.json`` (``task_worker.json``
    for ``task.py``; see :func:`merge_worker_configs`), in the folder of ``folder / file_name``;
    None if neither is there. A file that is there but not a valid config raises (pydantic's
    ``ValidationError``, which names the file's bad field).
    """
    task_file = Path(folder) / file_name
    candidates = (task_file.with_name("default_worker.json"), task_file.with_name(f"{task_file.stem}_worker.json"))
    found = [WorkerConfig.from_file(candidate) for candidate in candidates if candidate.is_file()]
    return merge_worker_configs(*found) if found else None


def merge_worker_configs(*configs: WorkerConfig | None) -> WorkerConfig:
    """One config from ``configs``, each later one overriding the earlier ones key by key.

    Only the keys a config gives (not None) override; ``env_variables`` are merged by variable name.
    """
    values: dict[str, Any] = {}
    for config in configs:
        for key in sorted(config.model_fields_set if config is not None else ()):
            value = getattr(config, key)
            if value is None:
                continue
            if key == "env_variables":
                value = {**values.get(key, {}), **value}
            values[key] = value
    return WorkerConfig.model_validate(values)


def secret_ref(ref: str) -> tuple[str, str]:
    """``(secret name, env variable name)`` of a ``personal_secrets`` / ``shared_secrets`` entry.

    ``"NAME:ENV_NAME"`` renames; a bare ``"NAME"`` is given to the task under its own name.
    """
    name, _, env = ref.partition(":")
    return name, env or name


def _check_env_variable(name: Any, value: Any) -> None:
    if not isinstance(name, str) or not _ENV_NAME.fullmatch(name):
        raise ValueError(f"invalid env variable name {name!r}; use letters, digits and '_', not first a digit")
    if not isinstance(value, (str, int, float, bool)):
        raise ValueError(f"env variable {name!r} must be a str, int, float or bool, not {type(value).__name__}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"env variable {name!r} must be a finite number, not {value}")
    if isinstance(value, str) and "\0" in value:
        raise ValueError(f"env variable {name!r} must not contain a NUL character")
    if len(name) > ENV_NAME_MAX or len(str(value)) > ENV_VALUE_MAX:
        raise ValueError(
            f"env variable {name[:40]!r}: names take at most {ENV_NAME_MAX} characters, values {ENV_VALUE_MAX}"
        )


def _decode_additional_params(packed: Any) -> dict[str, Any]:
    if not isinstance(packed, str):
        raise ValueError("additional_params must be a base64 string")
    try:
        extras = json.loads(base64.b64decode(packed, validate=True))
    except ValueError as exc:  # binascii.Error, UnicodeDecodeError and JSONDecodeError
        raise ValueError(f"additional_params is not base64-encoded JSON: {exc}") from None
    if not isinstance(extras, dict):
        raise ValueError("additional_params must hold a JSON object")
    unknown = sorted(set(extras) - set(EXTRA_KEYS) - set(NO_EFFECT_KEYS) - set(IGNORED_KEYS))
    if unknown:
        raise ValueError(f"additional_params has unknown keys {unknown}; allowed: {', '.join(EXTRA_KEYS)}")
    return extras


def _drop_no_effect_keys(*sources: dict[str, Any]) -> None:
    """Remove the :data:`NO_EFFECT_KEYS` from ``sources``; one warning names those given a value."""
    given = set()
    for source in sources:
        for key in NO_EFFECT_KEYS:
            if source.pop(key, None) not in (None, ""):
                given.add(key)
        for key in IGNORED_KEYS:
            source.pop(key, None)
    if given:
        names = ", ".join(sorted(given))
        message = f"WorkerConfig fields with no effect on a taskyard worker, ignored: {names}"
        warnings.warn(NoEffectWarning(message), stacklevel=3)


def _merge_extras(data: dict[str, Any], extras: dict[str, Any]) -> dict[str, Any]:
    for key, value in extras.items():
        given = data.get(key)
        if given is None:
            data[key] = value
        elif _plain(given) != value:
            raise ValueError(f"{key} is given both top-level and in additional_params, with different values")
    return data


def _plain(value: Any) -> Any:
    """``value`` as it would look once decoded from JSON, for comparing with additional_params."""
    if isinstance(value, BaseModel):
        return value.model_dump(exclude_none=True)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items() if item is not None}
    return value


def _apply_dump_options(out: dict[str, Any], info: SerializationInfo, set_keys: set[str]) -> Any:
    # Every field defaults to None, so exclude_defaults drops the same keys as exclude_none.
    if info.exclude_none or info.exclude_defaults:
        out = {key: value for key, value in out.items() if value is not None}
    if info.exclude_unset:
        out = {key: value for key, value in out.items() if key in set_keys}
    if info.include is not None:
        out = {key: value for key, value in out.items() if key in info.include}
    if info.exclude is not None:
        out = {key: value for key, value in out.items() if key not in info.exclude}
    return out
