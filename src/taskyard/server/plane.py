"""The control plane's parts, built once per server and shared by routers and the scheduler."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TypeVar

from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker

from taskyard import settings
from taskyard.backends import Backend
from taskyard.backends.registry import BackendContext, make_backend
from taskyard.errors import ConfigError, InvalidInput
from taskyard.models import PoolSpec
from taskyard.server.callbacks.sender import CallbackSender
from taskyard.server.config import ServerConfig
from taskyard.server.db.session import make_engine, make_sessionmaker, migrate, read_transaction, transaction
from taskyard.server.lanes import Lane
from taskyard.server.lease import ServerLease
from taskyard.server.notifier import SCHEDULER, Notifier
from taskyard.server.peer_wakeups import PeerWakeups
from taskyard.server.roster import Roster
from taskyard.server.scheduler import Scheduler
from taskyard.server.services import pools, worker_output
from taskyard.server.services import secrets as secret_service
from taskyard.server.storage import Storage
from taskyard.server.token_cache import TokenCache
from taskyard.server.vault import Vault
from taskyard.server.worker_commands import CommandBroker
from taskyard.server.worker_tokens import WorkerTokens

T = TypeVar("T")
UnitOfWork = Callable[[sessionmaker[Session]], AbstractContextManager[Session]]  # transaction, read_transaction
DATABASE_THREADS = 32


@dataclass
class Plane:
    config: ServerConfig  # the validated server configuration: sizes, sandbox, GPUs, limits
    sessions: sessionmaker[Session]
    notifier: Notifier
    storage: Storage
    scheduler: Scheduler  # holds every configured backend, by name, each on its own lane
    vault: Vault  # seals and opens the secrets; its key is kept apart from the database
    callbacks: CallbackSender  # sends the callback outbox; started with the scheduler
    lease: ServerLease | None = None  # SQLite only: held while this server runs, no second server on it
    peers: PeerWakeups | None = None  # PostgreSQL: wake-ups to and from the other servers on the database
    roster: Roster | None = None  # PostgreSQL: the live servers, whose URLs workers are given
    tokens: TokenCache = field(default_factory=lambda: TokenCache(settings.token_cache_seconds()))
    commands: CommandBroker = field(init=False)  # commands for kept workers, on their way through the store
    worker_tokens: WorkerTokens = field(init=False)  # agent token -> worker name, told by the scheduler
    # Where run and read do their transactions: a plain pool is a cheaper hop from the event loop than
    # anyio's thread pool (which sync endpoints use), and the calls of agents go through it.
    database_threads: ThreadPoolExecutor = field(
        default_factory=lambda: ThreadPoolExecutor(DATABASE_THREADS, thread_name_prefix="taskyard-db")
    )

    def __post_init__(self) -> None:
        self.commands = CommandBroker(self.sessions, self.notifier, self.vault)
        self.worker_tokens = self.scheduler.worker_tokens

    def start(self, agents_at: str) -> None:
        """Join the roster (PostgreSQL), then start scheduling and sending callbacks; workers call ``agents_at``."""
        if self.roster is not None:
            self.roster.start(agents_at)
        self.scheduler.start(agents_at, self.roster.agent_urls if self.roster is not None else None)
        self.callbacks.start()

    def agent_urls(self) -> list[str]:
        """The URLs of the live servers agents may call, this one's first (empty on SQLite: only this one)."""
        return self.roster.urls() if self.roster is not None else []

    def transaction(self):
        return transaction(self.sessions)

    def reading(self):
        """A transaction that only reads (see :func:`read_transaction`): it waits for no writer."""
        return read_transaction(self.sessions)

    async def run(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction on a database thread (for async endpoints)."""
        return await self._on_database_thread(transaction, work)

    async def read(self, work: Callable[[Session], T]) -> T:
        """Run ``work``, which only reads, in one read transaction on a database thread (for async endpoints)."""
        return await self._on_database_thread(read_transaction, work)

    async def _on_database_thread(self, unit_of_work: UnitOfWork, work: Callable[[Session], T]) -> T:
        def unit() -> T:
            with unit_of_work(self.sessions) as session:
                return work(session)

        return await asyncio.get_running_loop().run_in_executor(self.database_threads, unit)

    @property
    def backend(self) -> Backend:
        """The default pool's backend."""
        return self.scheduler.backend

    def backends(self) -> dict[str, Backend]:
        """Every configured backend, by name."""
        return {name: lane.backend for name, lane in self.scheduler.lanes.items()}

    def backend_of(self, pool: PoolSpec) -> Backend:
        """The backend the pool's workers start on (the default one when its backend is not configured)."""
        lane = self.scheduler.lane(pool)
        return lane.backend if lane is not None else self.backend

    def backend_of_pool(self, session: Session, name: str) -> Backend:
        """The backend of the pool called ``name``; the default one when there is no such pool (refused later)."""
        if name == pools.DEFAULT:
            return self.backend
        try:
            return self.backend_of(pools.get_spec(session, name))
        except InvalidInput:
            return self.backend

    def default_pool(self) -> PoolSpec:
        """The default pool as the scheduler runs it: its limits come from the server config."""
        spec = pools.default_spec(max_workers=self.scheduler.max_workers, warm_workers=self.scheduler.warm_workers)
        return spec.model_copy(update={"backend": self.scheduler.default_backend})


def build_plane(config: ServerConfig) -> Plane:
    """Open (and migrate) the store and make the backend and the scheduler; nothing is started yet."""
    config.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(config.db_url or settings.db_url(config.data_dir))
    migrate(engine)
    sessions = make_sessionmaker(engine)
    lease = ServerLease(sessions, settings.server_lease_seconds()) if engine.dialect.name == "sqlite" else None
    if lease is not None:  # SQLite: one server; PostgreSQL: peers share the queue and the workers
        lease.acquire()
    max_workers, warm_workers = pool_limits(config)
    vault = Vault.load(config.data_dir, config.vault_key)
    secret_service.settle_keys(sessions, vault)
    notifier = Notifier()
    peers = PeerWakeups(engine.url.render_as_string(hide_password=False), notifier) if lease is None else None
    _notify_after_commit(sessions, notifier, peers)
    with transaction(sessions) as session:  # the file's pools, then no pool over the server's limits
        pools.declare(session, {name: pool.spec(name) for name, pool in config.pools.items()}, sizes=config.sizes)
        pools.refuse_over_limits(session, max_workers)
    storage = Storage(config.data_dir / "blobs")
    scheduler = Scheduler(
        sessions,
        notifier,
        make_lanes(config),
        default_backend=config.backend,
        max_workers=max_workers,
        sizes=config,
        warm_workers=warm_workers,
        on_worker_ended=lambda name: worker_output.drop(storage, name),  # a worker's own log lives as long as it
    )
    callbacks = CallbackSender(sessions, notifier, vault, config.callbacks)
    if lease is not None:
        lease.start()
    if peers is not None:
        peers.start()
    roster = Roster(sessions, settings.roster_seconds()) if lease is None else None
    return Plane(
        config, sessions, notifier, storage, scheduler, vault, callbacks, lease=lease, peers=peers, roster=roster
    )


def pool_limits(config: ServerConfig) -> tuple[int, int]:
    """The default pool's ``(max_workers, warm_workers)``; a ConfigError when more warm workers are asked for."""
    max_workers = config.max_workers or settings.max_workers()
    if config.warm_workers is None:
        return max_workers, min(settings.warm_workers(), max_workers)
    if config.warm_workers > max_workers:
        raise ConfigError(
            f"warm_workers: {config.warm_workers} warm workers are more than max_workers ({max_workers}) allows;"
            " lower warm_workers or raise max_workers"
        )
    return max_workers, config.warm_workers


def make_lanes(config: ServerConfig) -> dict[str, Lane]:
    """Every backend of the configuration, each on a lane of its own; MissingExtra names what to install."""
    lanes = {}
    for name, backend_settings in config.backends.items():
        context = BackendContext(name, config.data_dir, sandbox=config.sandbox, gpus=config.gpus)
        backend = make_backend(config.backend_type(name), backend_settings, context)
        lanes[name] = Lane(name, backend, timeout=backend_settings.timeout, threads=backend_settings.threads)
    return lanes


def _notify_after_commit(sessions: sessionmaker[Session], notifier: Notifier, peers: PeerWakeups | None) -> None:
    @event.listens_for(sessions, "after_commit")
    def _after_commit(session: Session) -> None:
        keys = session.info.pop("notify", None)
        if keys:
            notifier.notify(*keys)
            # This server's scheduler answers its own changes; a peer's would only queue behind it for
            # the placing lock (each also looks every RECONCILE_EVERY, and so after this one's death)
            shared = tuple(key for key in keys if key != SCHEDULER)
            if peers is not None and shared:
                peers.publish(shared)

    @event.listens_for(sessions, "after_rollback")
    def _after_rollback(session: Session) -> None:
        session.info.pop("notify", None)
