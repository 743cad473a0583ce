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
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


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
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
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


class ServerLeaseRow(Base):
    """The one live server that holds the database (``taskyard.server.lease``); taken over once it expires."""

    __tablename__ = "server_lease"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    holder: Mapped[str] = mapped_column(String(64))  # a random id of the holding process
    description: Mapped[str] = mapped_column(String(255))  # host and pid, for the refusal message
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
