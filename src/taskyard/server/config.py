"""The server's one configuration: a TOML file, then ``TASKYARD_*`` overrides, then command-line flags.

:func:`load_config` reads them in that order (a later one wins) into one validated
:class:`ServerConfig`, once, at start. Every mistake is a :class:`~taskyard.errors.ConfigError`
whose message names where it is (the file, or the variable) and the dotted key::

    taskyard.toml: sizes.Small.memory: '2 gigs' is not a size; use e.g. "2GiB", "512MiB"

A file looks like this (every key is optional)::

    db_url = "postgresql://taskyard@db/taskyard"
    max_workers = 8           # workers running tasks at once in the default pool
    warm_workers = 2          # workers started ahead of need
    sandbox = "auto"          # auto | required | off
    metrics = "auto"          # /metrics: auto (open on loopback, else an admin's token) | token | open
    gpus = ["0", "1"]         # GPU ids workers may be given (or "0,1"); left out: found with nvidia-smi -L

    [sizes.Small]             # given sizes replace the built-in ones
    cpu = 1
    memory = "2GiB"
    default = true

    [callbacks]               # task callbacks (see CallbackSettings for every key)
    attempts = 10
    allowed_hosts = ["ci.example.com"]

    [backends.cluster]        # more backends beside "local" (see taskyard.backends.settings)
    type = "ray"
    address = "ray://head:10001"

    [pools.big]               # pools the file declares (see PoolSettings); the API cannot delete them
    backend = "cluster"
    max_workers = 20
"""

from __future__ import annotations

import base64
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from taskyard import settings
from taskyard.backends.registry import BackendType, MissingExtra, backend_types, check_installed
from taskyard.backends.settings import BackendSettings, LocalSettings
from taskyard.config import SIZE_NAME, SIZE_NAME_RULE, WorkerConfig
from taskyard.errors import ConfigError, InvalidInput
from taskyard.models import PoolSpec, check_id, parse_duration

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

GiB = 1 << 30
UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9}
UNITS |= {"t": 10**12, "tb": 10**12, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}
_MEMORY = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)\s*")
_GPU_ID = re.compile(r"[A-Za-z0-9:._-]+")

#: top-level keys a file may hold
FILE_KEYS = (
    "db_url", "max_workers", "warm_workers", "sandbox", "gpus", "sizes", "callbacks", "metrics", "backend", "backends",
    "pools", "advertise_url",
)
#: the variables that override a file's keys (and are overridden by explicit arguments)
ENV_OVERRIDES = {
    "db_url": "TASKYARD_DB_URL",
    "max_workers": "TASKYARD_MAX_WORKERS",
    "warm_workers": "TASKYARD_WARM_WORKERS",
    "sandbox": "TASKYARD_SANDBOX",
    "gpus": "TASKYARD_GPUS",
    "metrics": "TASKYARD_METRICS",
    "advertise_url": "TASKYARD_ADVERTISE_URL",
    "vault_key": "TASKYARD_VAULT_KEY",  # not a file key: a key does not belong in a file that gets copied around
}


def parse_memory(value: Any) -> int:
    """Bytes from ``"2GiB"``, ``"512MiB"``, ``"1.5GB"``, ``"2 GiB"`` or an int of bytes."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    match = _MEMORY.fullmatch(value) if isinstance(value, str) else None
    if match is None or match.group(2).lower() not in UNITS:
        raise ValueError(f'{value!r} is not a size; use e.g. "2GiB", "512MiB"')
    return int(float(match.group(1)) * UNITS[match.group(2).lower()])


def memory_text(size: int) -> str:
    """``"2 GiB"``, ``"512 MiB"``, ``"23.5 GiB"``: bytes for people, in binary units."""
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    power = 0
    while power < len(units) - 1 and size >= 1024 ** (power + 1):
        power += 1
    number = f"{size / 1024**power:.1f}".removesuffix(".0")
    return f"{number} {units[power]}"


def _size_name(name: str) -> str:
    if not SIZE_NAME.fullmatch(name):
        raise ValueError(f"{name!r} is not a size name; use {SIZE_NAME_RULE}")
    return name


SizeName = Annotated[str, AfterValidator(_size_name)]


class Size(BaseModel):
    """A worker size: what a worker of this size may use."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: float = Field(gt=0, allow_inf_nan=False)  # cores, may be fractional
    memory: Annotated[int, Field(gt=0)]  # bytes; a file gives "2GiB", "512MiB", "1.5GB" or bytes
    gpu: int = Field(default=0, ge=0)
    default: bool = False  # the size of a task that names none (at most one size)

    _memory = field_validator("memory", mode="before")(parse_memory)

    def needs(self) -> str:
        """``"8 cpu, 16 GiB"``, with ``", 1 GPU"`` when it takes any."""
        text = f"{self.cpu:g} cpu, {memory_text(self.memory)}"
        return text + (f", {self.gpu} GPU{'s' if self.gpu > 1 else ''}" if self.gpu else "")


class CallbackSettings(BaseModel):
    """``[callbacks]``: how task callbacks are sent. Retried on no answer, timeouts, 5xx and 429."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    attempts: int = Field(default=10, ge=1, le=100)  # tries in all, the first included
    first_delay: float = Field(default=5.0, gt=0, le=3600)  # seconds before the first retry; doubled each time
    max_delay: float = Field(default=120.0, gt=0, le=86400)  # the longest wait between two tries
    timeout: float = Field(default=10.0, gt=0, le=600)  # seconds a receiver has to answer
    log_tail_mb: float = Field(default=5.0, ge=0, le=100)  # how much of the task's log the body carries
    allowed_hosts: tuple[str, ...] = ()  # empty: any host; else callback URLs must name one of these


class PoolSettings(BaseModel):
    """``[pools.NAME]``: a pool the file declares. It replaces a pool of that name made over the API."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: str = "local"  # the name of one of the configured backends
    max_workers: int = Field(default=1, ge=0, le=10_000)  # workers running tasks at once
    warm_workers: int = Field(default=0, ge=0, le=100)  # workers started ahead of need
    time_to_live: float | None = None  # seconds, or e.g. "8h": a worker older than this is stopped
    worker_config: WorkerConfig = Field(default_factory=WorkerConfig)  # defaults for its tasks
    shared_with: list[str] = Field(default_factory=list)  # users, "group:NAME" or "*" (everyone); admins always

    _ttl = field_validator("time_to_live", mode="before")(parse_duration)

    def spec(self, name: str) -> PoolSpec:
        return PoolSpec(name=name, **self.model_dump(exclude={"worker_config"}), worker_config=self.worker_config)


def _pool_name(name: str) -> str:
    check_id(name, "pool name")
    if name == "default":
        raise ValueError("the default pool is set by the top-level max_workers and warm_workers")
    return name


PoolName = Annotated[str, AfterValidator(_pool_name)]
BackendName = Annotated[str, AfterValidator(lambda name: check_id(name, "backend name"))]


def builtin_sizes() -> dict[str, Size]:
    """The sizes a server offers when its file names none; X-Small is the default."""
    shapes = {"X-Small": (1, 1), "Small": (1, 2), "Medium": (2, 4), "Large": (4, 8), "X-Large": (8, 16)}
    return {name: Size(cpu=cpu, memory=gib * GiB) for name, (cpu, gib) in shapes.items()}


def match_size(sizes: Mapping[str, Size], name: str) -> str | None:
    """The canonical name of the size called ``name`` in any letter case, or None."""
    lowered = name.lower()
    return next((known for known in sizes if known.lower() == lowered), None)


def find_size(sizes: Mapping[str, Size], name: str) -> tuple[str, Size]:
    """``(canonical name, size)`` for ``name`` in any letter case; InvalidInput naming the valid sizes."""
    canonical = match_size(sizes, name)
    if canonical is None:
        raise InvalidInput(
            f"unknown worker_size {name!r}; valid sizes: {', '.join(sizes)}", field="worker_config.worker_size"
        )
    return canonical, sizes[canonical]


def default_size_name(sizes: Mapping[str, Size]) -> str:
    """The size marked default; else X-Small if there is one; else the first."""
    marked = [name for name, size in sizes.items() if size.default]
    return next(iter(marked), "X-Small" if "X-Small" in sizes else next(iter(sizes)))


class ServerConfig(BaseModel):
    """Everything the control plane is told at start; validated once, read-only afterwards."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    data_dir: Path
    db_url: str | None = None  # None: SQLite under data_dir
    backend: str = "local"  # the default pool's backend: one of ``backends``
    max_workers: int | None = Field(default=None, ge=1)  # None: one per core
    warm_workers: int | None = Field(default=None, ge=0, le=100)  # None: TASKYARD_WARM_WORKERS or 2
    admin_token: str | None = Field(default=None, repr=False)  # make sure an admin with it exists (embedded)
    sandbox: Literal["auto", "required", "off"] = "auto"
    gpus: tuple[str, ...] | None = None  # GPU ids workers may be given; None: found on the host
    sizes: dict[SizeName, Size] = Field(default_factory=builtin_sizes)
    # The vault's Fernet key(s), comma-separated, the first encrypting; None: the key file in data_dir.
    vault_key: str | None = Field(default=None, repr=False)
    callbacks: CallbackSettings = Field(default_factory=CallbackSettings)
    # Who may read /metrics: "auto" (loopback clients freely, others with an admin's token), "token", "open".
    metrics: Literal["auto", "token", "open"] = "auto"
    # Each backend's settings by name, of its type's model (taskyard.backends.settings); "local" is always there.
    backends: dict[BackendName, BackendSettings] = Field(default_factory=lambda: {"local": _local()})
    pools: dict[PoolName, PoolSettings] = Field(default_factory=dict)
    advertise_url: str | None = None  # the URL workers reach the control plane at; None: from the bind address

    @field_validator("backends", mode="before")
    @classmethod
    def _typed_backends(cls, value: Any) -> Any:
        """Raw tables (a file's) become their type's settings; see :func:`backend_settings` for messages."""
        if not isinstance(value, Mapping):
            return value
        typed: dict[str, Any] = {"local": LocalSettings()}
        problems: list[tuple[str, str]] = []
        for name, table in value.items():
            try:
                typed[name] = backend_settings(name, table)
            except BackendTableError as exc:
                problems += exc.problems
        if problems:
            raise BackendTableError(problems)
        return typed

    @field_validator("advertise_url")
    @classmethod
    def _check_advertise_url(cls, value: str | None) -> str | None:
        return None if value is None else _http_url(value)

    @model_validator(mode="after")
    def _check_names(self) -> ServerConfig:
        if not isinstance(self.backends.get("local"), LocalSettings):
            raise ValueError('backends.local: the backend called "local" is of type "local"')
        named = [("backend", self.backend), *((f"pools.{name}.backend", p.backend) for name, p in self.pools.items())]
        for where, backend in named:
            if backend not in self.backends:
                raise ValueError(f"{where}: no backend {backend!r}; backends: {', '.join(self.backends)}")
        return self

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpu_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if isinstance(value, (list, tuple)):
            return tuple(_gpu_id(item) for item in value)
        return value

    @field_validator("vault_key")
    @classmethod
    def _check_vault_key(cls, value: str | None) -> str | None:
        if value is not None:
            for key in value.split(","):
                _vault_key(key.strip())
        return value

    @field_validator("sizes")
    @classmethod
    def _check_sizes(cls, sizes: dict[str, Size]) -> dict[str, Size]:
        if not sizes:
            raise ValueError("name at least one size, or leave sizes out for the built-in ones")
        seen: dict[str, str] = {}
        for name in sizes:
            if (other := seen.setdefault(name.lower(), name)) != name:
                raise ValueError(f"{other!r} and {name!r} differ only by letter case; sizes are matched in any case")
        marked = [f"sizes.{name}.default" for name, size in sizes.items() if size.default]
        if len(marked) > 1:
            raise ValueError(f"more than one size is marked default ({', '.join(marked)}); mark one at most")
        return sizes

    def size(self, name: str) -> tuple[str, Size]:
        """``(canonical name, size)`` for ``name`` in any letter case; InvalidInput naming the valid sizes."""
        return find_size(self.sizes, name)

    def default_size(self) -> str:
        """The name of the size a task gets when neither it nor its pool names one."""
        return default_size_name(self.sizes)

    def backend_type(self, name: str) -> BackendType:
        """The type of the backend called ``name``."""
        return backend_types()[self.backends[name].type]

    def remote_backends(self) -> list[str]:
        """The backends whose workers run on other machines, and so need :attr:`advertise_url`."""
        return [name for name in self.backends if self.backend_type(name).remote]


def _local() -> BackendSettings:
    return LocalSettings()


class BackendTableError(ValueError):
    """A ``[backends.NAME]`` table that is not valid; ``problems`` are (dotted key, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{key}: {message}" for key, message in problems))


def backend_settings(name: str, table: Any) -> BackendSettings:
    """The settings of ``[backends.NAME]``, of the model its ``type`` names; BackendTableError naming each key."""
    if isinstance(table, BackendSettings):
        return table
    where = f"backends.{name}"
    types = backend_types()
    kind = types.get(str(table.get("type"))) if isinstance(table, Mapping) else None
    if kind is None:
        given = f" (got {table.get('type')!r})" if isinstance(table, Mapping) and "type" in table else ""
        raise BackendTableError([(f"{where}.type", f"give one of: {', '.join(types)}{given}")])
    try:
        check_installed(kind)
        return kind.settings.model_validate(table)
    except MissingExtra as exc:
        raise BackendTableError([(f"{where}.type", str(exc))]) from None
    except ValidationError as exc:
        problems = [(f"{where}.{_dotted(error)}", _message(error, [], kind.settings)) for error in exc.errors()]
        raise BackendTableError(problems) from None


def _dotted(error: Any) -> str:
    return ".".join(str(part) for part in error["loc"]) or "type"


def _http_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"{value!r} is not an http(s) URL of the control plane, e.g. http://taskyard.example.com:8642")
    if "," in value:  # agents are given the servers' URLs as one comma-separated list
        raise ValueError(f"{value!r}: one URL, without a comma (each server of a database advertises its own)")
    return value.rstrip("/")


def _gpu_id(item: Any) -> str:
    text = str(item) if isinstance(item, int) and not isinstance(item, bool) else item
    if not isinstance(text, str) or not _GPU_ID.fullmatch(text):
        raise ValueError(f'{item!r} is not a GPU id; use e.g. "0" (nvidia-smi -L\'s index) or a GPU UUID')
    return text


def _vault_key(key: str) -> None:
    """Refuse what is not a Fernet key (urlsafe base64 of 32 bytes), without ever quoting it."""
    try:
        valid = len(base64.urlsafe_b64decode(key.encode("ascii"))) == 32 and len(key) == 44
    except (ValueError, UnicodeEncodeError):
        valid = False
    if not valid:
        raise ValueError(
            "not a vault key: give one or more comma-separated Fernet keys (44 characters of urlsafe base64), "
            "made e.g. with: python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
        )


# -- loading ------------------------------------------------------------------------------------


def load_config(path: Path | None = None, **overrides: Any) -> ServerConfig:
    """The server's configuration from ``path`` (else ``TASKYARD_CONFIG``, else no file).

    Then the ``TASKYARD_*`` variables of :data:`ENV_OVERRIDES` replace the file's keys, and the
    ``overrides`` that are not None replace both (command-line flags win). ``data_dir`` defaults to
    ``TASKYARD_HOME``. Raises :class:`ConfigError` naming the file or variable and the key.
    """
    path = path or _path_from_env()
    values: dict[str, Any] = {}
    origins: dict[str, str] = {}
    if path is not None:
        values = _read_file(path)
        origins = dict.fromkeys([*values, ""], str(path))
    for key, variable in ENV_OVERRIDES.items():
        given = os.environ.get(variable)
        if given is not None and (given != "" or key == "gpus"):
            values[key], origins[key] = given, variable
    values |= {key: value for key, value in overrides.items() if value is not None}
    values.setdefault("data_dir", settings.home())
    try:
        return ServerConfig(**values)
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(error, origins) for error in exc.errors())) from None


def _path_from_env() -> Path | None:
    given = os.environ.get("TASKYARD_CONFIG")
    return Path(given).expanduser() if given else None


def _read_file(path: Path) -> dict[str, Any]:
    """The file's top-level keys, refused when one is not a known key."""
    try:
        with open(path, "rb") as source:
            values = tomllib.load(source)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration file: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    unknown = [key for key in values if key not in FILE_KEYS]
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key; the keys are: {', '.join(FILE_KEYS)}")
    return values


def _describe(error: Any, origins: Mapping[str, str]) -> str:
    """One pydantic error as ``where: dotted.key: what is wrong`` (a variable stands for its key)."""
    loc = [str(part) for part in error["loc"] if part != "[key]"]
    origin = origins.get(loc[0] if loc else "", "")
    prefix = f"{origin}: " if origin else ""
    cause = (error.get("ctx") or {}).get("error")
    if isinstance(cause, BackendTableError):
        return "; ".join(f"{prefix}{key}: {message}" for key, message in cause.problems)
    if not loc:  # a check across keys: its message starts with the key
        return prefix + _message(error, loc)
    if origin.startswith("TASKYARD_") and len(loc) == 1:
        return f"{origin}: {_message(error, loc)}"
    return f"{prefix}{'.'.join(loc)}: {_message(error, loc)}"


def _message(error: Any, loc: list[str], model: type[BaseModel] | None = None) -> str:
    if error["type"] == "extra_forbidden":
        tables: dict[str, type[BaseModel]] = {"sizes": Size, "callbacks": CallbackSettings, "pools": PoolSettings}
        known = (model or tables.get(loc[0] if loc else "", ServerConfig)).model_fields
        return f"unknown key; the keys are: {', '.join(known)}"
    message = str(error["msg"]).removeprefix("Value error, ")
    given = error.get("input")
    if error["type"] != "value_error" and isinstance(given, (str, int, float)):
        message += f" (got {given!r})"
    return message
