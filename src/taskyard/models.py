"""API schemas shared by the client and the server (pydantic). ORM models live in ``server/db``."""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import PurePosixPath
from typing import Annotated, Any

from pydantic import BaseModel, Field, StringConstraints, field_validator, model_validator

from taskyard import callbacks, notebook_task
from taskyard.agent import kinds
from taskyard.config import WorkerConfig
from taskyard.status import TaskStatus, WorkerStatus

TASK_KINDS = {suffix: kind.title for suffix, kind in kinds.KINDS.items()}  # suffix -> kind, for people
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_VENV_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,99}")


def check_id(value: str, what: str) -> str:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise ValueError(
            f"{what} {value!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


EVERYONE = "*"  # in a pool's shared_with: every user
GROUP = "group:"  # in a pool's shared_with: "group:NAME" is every member of the group NAME


def check_sharee(value: str) -> str:
    """One entry of a pool's ``shared_with``: ``"*"``, a user name, or ``"group:NAME"``."""
    if value == EVERYONE:
        return value
    if value.startswith(GROUP):
        check_id(value.removeprefix(GROUP), "group name")
        return value
    return check_id(value, "user name")


def check_file_name(value: str) -> str:
    if len(value) > 255 or any(ord(char) < 32 or char == "\x7f" for char in value):
        raise ValueError("file_name must be at most 255 characters, with no control characters (NUL, newline...)")
    path = PurePosixPath(value)
    if not value or path.is_absolute() or ".." in path.parts:
        raise ValueError(f"file_name {value!r} must be a path relative to files_path, without '..'")
    if kinds.kind_of(value) is None:
        supported = ", ".join(kinds.SUFFIXES)
        raise ValueError(f"file_name {value!r} has an unsupported extension; supported: {supported}")
    return value


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([dhms])")
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


MAX_DURATION = 10 * 365 * 86400.0  # ten years: the longest duration any field takes


def parse_duration(value: Any) -> float | None:
    """Seconds from ``90``, ``"90"``, ``"1h30m"``, ``"2d"``, ``"45s"``; None stays None.

    A duration is finite, more than 0 and at most :data:`MAX_DURATION`; anything else is a ValueError.
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ValueError(f"{value!r} is not a duration; use seconds or a form like '1h30m', '45s', '2d'")
    seconds = float(value) if not isinstance(value, str) else _seconds_of(value)
    if not math.isfinite(seconds) or not 0 < seconds <= MAX_DURATION:
        raise ValueError(f"a duration must be more than 0 seconds and at most {MAX_DURATION:.0f} (ten years)")
    return seconds


def _seconds_of(value: str) -> float:
    text = value.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if text and _DURATION.sub("", text) == "":
        return sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    raise ValueError(f"{value!r} is not a duration; use seconds or a form like '1h30m', '45s', '2d'")


class TaskSpec(BaseModel):
    """What a client submits: the task, its worker and its uploaded folder."""

    task_id: str | None = None
    file_name: str
    worker_config: WorkerConfig = Field(default_factory=WorkerConfig)
    capture_task_output: bool = True
    terminate_on_completion: bool = True
    worker: str | None = None  # run on this kept worker instead of a fresh one
    pool: str = "default"
    time_to_live: float | None = None  # seconds the task may run before it is stopped (Task Timed Out)
    max_retries: int = Field(default=0, ge=0, le=100)  # runs again after its worker is lost or reclaimed
    resubmit_on_preemption: bool = False  # same as max_retries=3 when max_retries is not given
    python_venv_name: str | None = None  # run with this virtual environment of the worker's host (~/.venv/NAME)
    parameters: dict[str, Any] | None = None  # a notebook's parameters, injected by papermill (.ipynb only)
    execution_timeout: float | None = None  # seconds a notebook's cell may run (.ipynb only)
    as_notebook: bool = False  # a .py in jupytext's percent format ("# %%" cells), run as a notebook
    bundle_sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bundle_size: int = Field(ge=0)
    callback_url: str | None = Field(default=None, max_length=2048)  # POSTed to when the task ends
    callback_url_token: str | None = Field(default=None, max_length=4096, repr=False)  # sent as its bearer token

    _file_name = field_validator("file_name")(check_file_name)
    _pool = field_validator("pool")(lambda v: check_id(v, "pool"))
    _ttl = field_validator("time_to_live", mode="before")(parse_duration)
    _cell_timeout = field_validator("execution_timeout", mode="before")(parse_duration)
    _parameters = field_validator("parameters")(notebook_task.check_parameters)
    _callback_url = field_validator("callback_url")(lambda v: None if v is None else callbacks.check_url(v))
    _callback_token = field_validator("callback_url_token")(callbacks.check_token)

    @model_validator(mode="after")
    def _notebook_options(self) -> TaskSpec:
        if self.as_notebook and PurePosixPath(self.file_name).suffix != notebook_task.SCRIPT_SUFFIX:
            raise ValueError("as_notebook applies to a .py script (jupytext's percent format) only")
        given = [name for name in ("parameters", "execution_timeout") if getattr(self, name) is not None]
        if given and not self.is_notebook():
            raise ValueError(f"{' and '.join(given)} apply to notebook tasks (.ipynb, or .py with as_notebook) only")
        return self

    def is_notebook(self) -> bool:
        """Does it run as a notebook (a .ipynb, or a .py with ``as_notebook``)?"""
        return self.as_notebook or PurePosixPath(self.file_name).suffix == notebook_task.SUFFIX

    def retries_allowed(self) -> int:
        return self.max_retries or (3 if self.resubmit_on_preemption else 0)

    @field_validator("task_id")
    @classmethod
    def _task_id(cls, value: str | None) -> str | None:
        return None if value is None else check_id(value, "task_id")

    @field_validator("python_venv_name")
    @classmethod
    def _python_venv_name(cls, value: str | None) -> str | None:
        if value is not None and not _VENV_NAME.fullmatch(value):
            raise ValueError(f"python_venv_name {value!r} must be a folder name: letters, digits, '.', '_' or '-'")
        return value


class StatusChange(BaseModel):
    status: TaskStatus
    alias: str
    started_at: datetime
    ended_at: datetime | None = None
    reason: str | None = None


class OutputsInfo(BaseModel):
    size: int
    partial: bool


class OutputFile(BaseModel):
    name: str  # path inside the outputs, with '/' between folders
    size: int  # bytes, uncompressed


class OutputFiles(BaseModel):
    """What a task's outputs archive holds: its regular files, in archive order."""

    files: list[OutputFile]
    total_size: int  # bytes of all files, uncompressed
    archive_size: int  # bytes of the compressed archive
    partial: bool  # the outputs of a task that did not succeed


MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=64)]
MetadataValue = Annotated[str, Field(max_length=4096)]


class TaskMetadata(BaseModel):
    """A task's metadata: the user's own notes on it, string keys to string values."""

    metadata: dict[MetadataKey, MetadataValue]

    @field_validator("metadata")
    @classmethod
    def _at_most_100_keys(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > 100:
            raise ValueError(f"metadata holds at most 100 keys, not {len(value)}")
        return value


class TaskInfo(BaseModel):
    id: str
    file_name: str
    status: TaskStatus
    alias: str
    user: str
    pool: str
    worker_name: str | None = None
    exit_code: int | None = None
    reason: str | None = None
    attempt: int = 0  # runs started so far; more than 1 after a lost worker was replaced
    position_in_queue: int | None = None  # 1 = next to start, while In Queue
    time_to_live: float | None = None
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outputs: OutputsInfo | None = None
    status_history: list[StatusChange] = []
    upload_required: bool = False


class TaskPage(BaseModel):
    tasks: list[TaskInfo]
    next_cursor: str | None = None


MAX_BATCH = 1000  # tasks in one batch submit


class TaskBatch(BaseModel):
    """Many tasks submitted at once (``POST /tasks/batch``): created in one transaction, in order."""

    tasks: list[TaskSpec] = Field(min_length=1, max_length=MAX_BATCH)


class TaskBatchInfo(BaseModel):
    tasks: list[TaskInfo]  # in the order of the batch


class WorkerInfo(BaseModel):
    name: str
    status: WorkerStatus
    user: str | None  # None for a warm worker that has no task yet
    pool: str
    backend: str
    size: str
    image: str
    gpus: list[str] = []  # the GPU devices it was given
    sandboxed: bool | None = None  # its task runs in a sandbox; None until its backend has started it
    limits: str | None = None  # how its size is held: "cgroup v2", "cgroup v1", "rlimit" or "none"
    keep: bool
    reason: str | None = None
    task_id: str | None = None
    created_at: datetime
    terminated_at: datetime | None = None
    expires_at: datetime | None = None  # a worker made with a time to live is terminated then


class ImageInfo(BaseModel):
    """A worker image the server's backend can start, as ``WorkerConfig(worker_image=...)`` names it."""

    name: str
    description: str  # what it is: on the local backend, the host's own Python under another name
    backend: str
    default: bool = False


class WorkerRequest(BaseModel):
    """A worker asked for with no task yet (``taskyard.create_worker``): its owner's, kept until it is
    terminated or its ``time_to_live`` (seconds, or "1h30m") has passed."""

    worker_config: WorkerConfig = Field(default_factory=WorkerConfig)
    pool: str = "default"
    time_to_live: float | None = None
    reuse: bool = False  # a live worker of the same user, pool, size and image made this way is returned instead

    _pool = field_validator("pool")(lambda v: check_id(v, "pool name"))
    _ttl = field_validator("time_to_live", mode="before")(parse_duration)


class PoolSpec(BaseModel):
    """A named group of workers: its backend, default worker config, size limit and time limit."""

    name: str
    backend: str = "local"
    worker_config: WorkerConfig = Field(default_factory=WorkerConfig)
    max_workers: int = Field(default=1, ge=0, le=10_000)
    warm_workers: int = Field(default=0, ge=0, le=100)
    time_to_live: float | None = None  # a worker older than this is stopped (Machine Time Limit Reached)
    # who may send tasks to it and see it: user names, "group:NAME" for a group's members, or "*" for every user
    # (admins always may)
    shared_with: list[str] = Field(default_factory=list, max_length=1000)

    _name = field_validator("name")(lambda v: check_id(v, "pool name"))
    _ttl = field_validator("time_to_live", mode="before")(parse_duration)
    _shared = field_validator("shared_with")(lambda v: [check_sharee(n) for n in v])


class PoolInfo(PoolSpec):
    user: str  # its owner; "config" for a pool the server's configuration file declares
    busy_workers: int = 0
    queued_tasks: int = 0
    created_at: datetime
    backend_fault: str | None = None  # what is wrong with its backend now (not answering, failing); None: fine


class SizeInfo(BaseModel):
    """A worker size the server offers, and whether its backend's host can hold one."""

    name: str
    cpu: float  # cores
    memory: int  # bytes
    memory_text: str  # e.g. "2 GiB"
    gpu: int = 0
    default: bool = False  # the size of a task that names none
    fits: bool = True  # False: a task asking for it is refused at submit
    why: str | None = None  # why it does not fit: what it needs, and what the host has


class CapacityInfo(BaseModel):
    """What the backend's workers may use in all."""

    cpu: float
    memory: int  # bytes
    memory_text: str
    gpus: list[str] = []  # device ids
    text: str  # e.g. "2 cpu, 23.5 GiB, 0 GPUs"


class SizeCatalog(BaseModel):
    sizes: list[SizeInfo]  # in the server config's order
    capacity: CapacityInfo | None = None  # None: the backend names no bound, and every size fits


class LogChunk(BaseModel):
    seq: int = Field(ge=1, le=2**62)
    stream: str = Field(pattern=r"^(stdout|stderr|system)$")
    ts: float = Field(ge=0, le=1e11)  # seconds since the epoch, as time.time() gives them
    text: str


class LogPage(BaseModel):
    chunks: list[LogChunk]
    last_seq: int
    status: TaskStatus
    worker_name: str | None = None
    done: bool  # the task is over and every chunk it will ever have is in this page or before it


class UserCreate(BaseModel):
    name: str
    is_admin: bool = False
    expires_in: float | None = Field(default=None, le=100 * 365 * 86400)  # seconds its token works (None: always)

    _name = field_validator("name")(lambda v: check_id(v, "user name"))
    _expires = field_validator("expires_in", mode="before")(parse_duration)


class TokenRotation(BaseModel):
    """A new token for a user: the old one stops working at once."""

    expires_in: float | None = Field(default=None, le=100 * 365 * 86400)  # seconds it works (None: always)

    _expires = field_validator("expires_in", mode="before")(parse_duration)


class UserInfo(BaseModel):
    name: str
    is_admin: bool
    created_at: datetime
    token_expires_at: datetime | None = None
    token: str | None = None  # only when the user is created or its token rotated


class GroupCreate(BaseModel):
    name: str

    _name = field_validator("name")(lambda v: check_id(v, "group name"))


class GroupInfo(BaseModel):
    """A group of users; a pool shared with ``group:NAME`` is usable by its members."""

    name: str
    members: list[str]  # user names, sorted
    created_at: datetime


class HealthInfo(BaseModel):
    status: str
    version: str
    max_upload_bytes: int | None = None  # the server's upload limit, which a client checks before it uploads
    pid: int | None = None  # the server's process id: only for a caller with a valid token


class SecretInfo(BaseModel):
    """A secret as listed: never its value."""

    name: str
    shared: bool  # made by an admin for every user's tasks; else its user's alone
    created_at: datetime
    updated_at: datetime
    age_days: int  # whole days since its value was last set


class SecretValue(SecretInfo):
    value: str


class SecretPut(BaseModel):
    value: str = Field(max_length=64 * 1024)


class KeyRotation(BaseModel):
    key_id: str  # the new key's fingerprint (never the key)
    resealed: int  # secrets encrypted again under it


# -- agent protocol ---------------------------------------------------------------------------


class Assignment(BaseModel):
    """The task a worker's agent is to run now."""

    task_id: str
    file_name: str
    kind: str
    env: dict[str, str]
    capture_output: bool
    log_seq: int  # the agent numbers its chunks from here + 1
    kill_grace: float
    startup_script: str | None = None
    git_configs: list[dict] = []  # a repository with a secret_name carries the secret's value as "token"
    secret_env: dict[str, str] = Field(default_factory=dict, repr=False)  # secrets, as env variables of the task
    network: bool = True  # False: the task runs with an empty network namespace (sandboxed workers)
    python_venv_name: str | None = None  # a virtual environment of the worker's (see taskyard.agent.envs)
    python_requirements: list[str] | str | None = None  # or one built from these lines, or this file's
    max_unpack_bytes: int | None = None  # the most its files may unpack to (TASKYARD_MAX_UNPACK_MB)
    max_outputs_bytes: int | None = None  # the most its outputs may pack to (TASKYARD_MAX_OUTPUTS_MB)
    bundle: str | None = None  # the task's files, base64, when small enough to come with the assignment
    keep_files: bool = False  # its task folder keeps what earlier tasks and uploads left (a requested worker)
    bundle_key: str | None = Field(default=None, exclude=True)  # where the server keeps them


class NextTask(BaseModel):
    task: Assignment | None = None
    terminate: bool = False


class AgentEvent(BaseModel):
    status: TaskStatus
    reason: str | None = None
    at: float | None = None  # when the agent saw it (seconds since the epoch); recorded instead of the arrival
    started_at: float | None = None  # the task's start, when this (its Finalizing) is the first word after it


class AgentLogs(BaseModel):
    chunks: list[LogChunk]
    started_at: float | None = None  # the task's start, when its first output goes before the start was told


class AgentAck(BaseModel):
    acked: int
    kill: bool = False
    terminate: bool = False  # the worker is to stop: the agent need not ask for another task


class AgentFinish(BaseModel):
    exit_code: int | None = None
    killed: bool = False
    error: str | None = None  # a failure outside the task itself (runtime error)
    reason: str | None = None  # why the task ended so, when the agent knows better than its exit code
    chunks: list[LogChunk] = []
    exited_at: float | None = None  # when the task's process ended (seconds since the epoch), as the agent saw it
    ended_at: float | None = None  # when the agent was done with the task (outputs uploaded)
    started_at: float | None = None  # the task's start, when it ended before the start was told (a quick task)


class AgentCommands(BaseModel):
    kill: list[str] = []
    terminate: bool = False
    commands: list[dict[str, Any]] = []  # orders for a kept worker (taskyard.agent.commands), each with its "id"
    servers: list[str] = []  # the live servers' agent URLs, this one's first; empty: only this one (SQLite)


class AgentCommandAnswer(BaseModel):
    result: dict[str, Any] | None = None
    error: str | None = None


# -- commands to a kept worker ------------------------------------------------------------------


class ExecRequest(BaseModel):
    """One command to run in a kept worker, where its task ran."""

    argv: list[str] = Field(min_length=1)
    stdin: str | None = None
    timeout: float = Field(default=60.0, gt=0, le=3600)


class ExecResult(BaseModel):
    exit_code: int | None  # negative: killed by that signal
    stdout: str
    stderr: str
    timed_out: bool = False
    truncated: bool = False  # more than 1 MiB of a stream: the rest is cut


class NotebookServerInfo(BaseModel):
    url: str  # with its token: whoever has it reaches the server


class ShellDoorInfo(BaseModel):
    address: str  # host:port that lets in one connection, for a short while
    key: str  # the connection's first line


class ErrorDetail(BaseModel):
    field: str
    message: str


class ErrorInfo(BaseModel):
    code: str  # stable: invalid_input, unauthorized, forbidden, not_found, conflict, too_large, internal...
    message: str
    field: str | None = None  # the request field it is about, dotted (e.g. worker_config.env_variables)
    details: list[ErrorDetail] | None = None  # every field a 422 found wrong


class ErrorBody(BaseModel):
    """What every error answer holds."""

    error: ErrorInfo
