"""ORM models: the control plane's tables. API schemas live apart, in ``taskyard.models``."""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator):
    """Stores naive UTC, returns aware UTC, on every database."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect) -> datetime | None:
        if value is None:
            return None
        return value.astimezone(timezone.utc).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=timezone.utc)


class Base(DeclarativeBase):
    pass


class UserRow(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    token_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # None: the token does not expire
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # set: removed, kept for its tasks' history


class GroupRow(Base):
    """A named set of users that pools are shared with (``group:NAME`` in a pool's ``shared_with``)."""

    __tablename__ = "groups"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class GroupMemberRow(Base):
    __tablename__ = "group_members"

    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class TaskRow(Base):
    __tablename__ = "tasks"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    file_name: Mapped[str] = mapped_column(String(255))
    spec: Mapped[str] = mapped_column(Text)  # TaskSpec as JSON
    spec_hash: Mapped[str] = mapped_column(String(64))
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    bundle_size: Mapped[int] = mapped_column(Integer)
    pool: Mapped[str] = mapped_column(String(64), default="default")
    status: Mapped[str] = mapped_column(String(40))
    status_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    target_worker: Mapped[str | None] = mapped_column(String(64))  # the worker it waits for; cleared once it starts
    worker_name: Mapped[str | None] = mapped_column(String(64))
    terminate_on_completion: Mapped[bool] = mapped_column(Boolean, default=True)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    time_to_live: Mapped[float | None] = mapped_column(Float)
    deadline_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # started_at + time_to_live
    stop_reason: Mapped[str | None] = mapped_column(String(20))  # "kill" or "timeout": the agent is to stop it
    stop_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    log_seq: Mapped[int] = mapped_column(Integer, default=0)  # highest log chunk stored
    log_bytes: Mapped[int] = mapped_column(Integer, default=0)
    outputs_key: Mapped[str | None] = mapped_column(String(255))
    outputs_size: Mapped[int | None] = mapped_column(Integer)
    outputs_partial: Mapped[bool] = mapped_column(Boolean, default=False)
    has_callback: Mapped[bool] = mapped_column(Boolean, default=False)  # a task_callbacks row is there: see outbox
    metadata_json: Mapped[str | None] = mapped_column(Text)  # the user's key/value notes (TaskMetadata), as JSON
    lease_token: Mapped[str | None] = mapped_column(String(32))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_tasks_status_created", "status", "created_at"),
        Index("ix_tasks_created", "created_at", "id"),  # the task list, newest first
        Index("ix_tasks_user_created", "user_id", "created_at", "id"),
        Index("ix_tasks_worker", "worker_name"),
        Index("ix_tasks_target_worker", "target_worker"),  # tasks waiting for a given worker: few
        # The queue: the scheduler's next tasks of a pool (worker_name IS NULL, oldest first), a task's
        # place in it, and the queued tasks that have a worker (worker_name > ''), each a range of it
        # however deep the queue is.
        Index("ix_tasks_queue", "status", "worker_name", "pool", "created_at", "id"),
    )


class StatusChangeRow(Base):
    __tablename__ = "task_status_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(40))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    reason: Mapped[str | None] = mapped_column(Text)


class LogChunkRow(Base):
    __tablename__ = "log_chunks"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    stream: Mapped[str] = mapped_column(String(8))
    ts: Mapped[float] = mapped_column(Float)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class PoolRow(Base):
    __tablename__ = "pools"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: declared by the configuration file
    spec: Mapped[str] = mapped_column(Text)  # PoolSpec as JSON
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WorkerRow(Base):
    __tablename__ = "workers"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: warm, not yet given a task
    pool: Mapped[str] = mapped_column(String(64), default="default")
    backend: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20))
    size: Mapped[str] = mapped_column(String(32))
    image: Mapped[str] = mapped_column(String(255))
    gpus: Mapped[str | None] = mapped_column(String(255))  # the GPU devices it holds, comma-separated
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    handle: Mapped[str | None] = mapped_column(Text)  # backend data, JSON
    sandboxed: Mapped[bool | None] = mapped_column(Boolean)  # None until its backend has started it
    limits: Mapped[str | None] = mapped_column(String(40))  # how its size is held: "cgroup v1", "rlimit"...
    keep: Mapped[bool] = mapped_column(Boolean, default=False)
    # A worker a user made with no task (create_worker): its WorkerConfig JSON, the base of its tasks' configs.
    config: Mapped[str | None] = mapped_column(Text)
    requested: Mapped[bool] = mapped_column(Boolean, default=False)  # made on request, not yet started
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # its time to live ends then
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    terminated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_workers_status", "status"),)


class SecretRow(Base):
    """A secret: its value sealed by the vault (``taskyard.server.vault``), never in clear."""

    __tablename__ = "secrets"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # None: shared, made by an admin
    value: Mapped[bytes] = mapped_column(LargeBinary)  # a Fernet token
    key_id: Mapped[str] = mapped_column(String(16))  # the fingerprint of the key that sealed it
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        UniqueConstraint("user_id", "name", name="uq_secrets_user_name"),
        # NULLs are distinct in a unique constraint: shared names need an index of their own.
        Index(
            "uq_secrets_shared_name",
            "name",
            unique=True,
            sqlite_where=text("user_id IS NULL"),
            postgresql_where=text("user_id IS NULL"),
        ),
        Index("ix_secrets_key_id", "key_id"),
    )


class CallbackTargetRow(Base):
    """Where a task calls back when it ends: its URL, and its bearer token sealed by the vault."""

    __tablename__ = "task_callbacks"

    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    token: Mapped[bytes | None] = mapped_column(LargeBinary)  # a Fernet token, or None: no bearer token
    key_id: Mapped[str | None] = mapped_column(String(16))  # the vault key that sealed ``token``
    task: Mapped[TaskRow] = relationship(lazy="raise")  # never loaded: a flush inserts the new task first


class CallbackDeliveryRow(Base):
    """The outbox: one callback to send, written in the transaction of the task's terminal status."""

    __tablename__ = "callback_deliveries"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # sent as X-Taskyard-Delivery
    task_id: Mapped[str] = mapped_column(ForeignKey("tasks.id", ondelete="CASCADE"), index=True)
    state: Mapped[str] = mapped_column(String(12))  # pending | delivered | failed
    task_status: Mapped[str] = mapped_column(String(40))  # the terminal status it reports
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[datetime] = mapped_column(UTCDateTime)  # when the next attempt is due
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)  # a sender holds it until then
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (Index("ix_callback_deliveries_due", "state", "next_at"),)


class CallbackAttemptRow(Base):
    __tablename__ = "callback_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    delivery_id: Mapped[str] = mapped_column(ForeignKey("callback_deliveries.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    status_code: Mapped[int | None] = mapped_column(Integer)  # None: no answer (refused, timed out)
    error: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[float] = mapped_column(Float, default=0.0)


class SigningSecretRow(Base):
    """A user's callback signing secret (HMAC-SHA256 key), sealed by the vault."""

    __tablename__ = "callback_signing_secrets"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    key_id: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FolderRow(Base):
    """A task folder pushed by name (``taskyard folders push NAME DIR``): the bundle it names now."""

    __tablename__ = "folders"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    bundle_size: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class FlowRunRow(Base):
    """A run of a flow (``taskyard.workflows``), advanced by the control plane's flow driver."""

    __tablename__ = "flow_runs"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    spec: Mapped[str] = mapped_column(Text)  # FlowSpec as JSON
    spec_hash: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))
    reason: Mapped[str | None] = mapped_column(Text)
    rerun_of: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_flow_runs_status", "status"),
        Index("ix_flow_runs_user_created", "user_id", "created_at"),
    )


class FlowTaskRow(Base):
    """A task of a flow run: its state, and the taskyard task of its current attempt."""

    __tablename__ = "flow_tasks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("flow_runs.id"))
    name: Mapped[str] = mapped_column(String(255))
    position: Mapped[int] = mapped_column(Integer)  # its place in the flow as written
    state: Mapped[str] = mapped_column(String(20))
    task_id: Mapped[str | None] = mapped_column(String(64))
    attempt: Mapped[int] = mapped_column(Integer, default=0)
    reused: Mapped[bool] = mapped_column(Boolean, default=False)
    bundle_sha256: Mapped[str | None] = mapped_column(String(64))  # its files with its inputs, once made
    bundle_size: Mapped[int | None] = mapped_column(Integer)
    reason: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        UniqueConstraint("run_id", "name", name="uq_flow_tasks_run_name"),
        Index("ix_flow_tasks_task", "task_id"),
    )
class ServerLeaseRow(Base):
    """The one live server that holds the database (``taskyard.server.lease``); taken over once it expires."""

    __tablename__ = "server_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))  # a random id of the holding process
    description: Mapped[str] = mapped_column(String(255))  # host and pid, for the refusal message
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)


class WorkerCommandRow(Base):
    """A command to a kept worker on its way (``taskyard.server.worker_commands``): kept until its sender
    has its answer or gives up, so that any server of the database may hand it and take the answer.

    The order and the answer may hold a user's data (files, a command's output): both are sealed by
    the vault, as secrets are."""

    __tablename__ = "worker_commands"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)  # the id the agent answers to
    # No foreign key: checking one would wait for the heartbeat, which holds its worker's row locked.
    worker_name: Mapped[str] = mapped_column(String(64))
    order: Mapped[bytes] = mapped_column(LargeBinary)  # a Fernet token of the order's JSON
    order_key: Mapped[str] = mapped_column(String(16))  # the vault key that sealed ``order``
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)  # its sender waits until then; swept after
    handed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)  # set once: a heartbeat answer carried it
    answer: Mapped[bytes | None] = mapped_column(LargeBinary)  # a Fernet token of the agent's answer
    answer_key: Mapped[str | None] = mapped_column(String(16))
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        Index("ix_worker_commands_worker", "worker_name", "handed_at"),
        Index("ix_worker_commands_expires", "expires_at"),
    )


class ServerRow(Base):
    """A server process on this database, with the URL its agents reach it at (``taskyard.server.roster``)."""

    __tablename__ = "servers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # random, one per process
    url: Mapped[str] = mapped_column(Text)  # its advertised agent URL
    description: Mapped[str] = mapped_column(String(255))  # host and pid, for people
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)  # refreshed while it runs
