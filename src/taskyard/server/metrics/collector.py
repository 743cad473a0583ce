"""The gauges, read from the store when Prometheus scrapes: a few grouped counts, nothing kept in memory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from taskyard.models import PoolSpec
from taskyard.server.db.models import CallbackDeliveryRow, TaskRow, WorkerRow
from taskyard.server.services import pools as pool_service
from taskyard.status import TaskStatus


class StoreCollector(Collector):
    """Tasks by state, queue depth by pool, live workers by state and backend, callbacks by state."""

    def __init__(
        self, transaction: Callable[[], AbstractContextManager[Session]], default_pool: Callable[[], PoolSpec]
    ) -> None:
        self.transaction = transaction
        self.default_pool = default_pool

    def describe(self) -> list:
        return []  # read at scrape time only: registering must not query the store

    def collect(self) -> Iterator[GaugeMetricFamily]:
        with self.transaction() as session:
            counts = task_counts(session)
            yield tasks_by_state(counts)
            yield queue_depth(counts, pool_service.all_specs(session, default=self.default_pool()))
            yield workers_by_state(session)
            yield callbacks_by_state(session)


def task_counts(session: Session) -> dict[tuple[str, str], int]:
    """Tasks by (state, pool), in one pass over the tasks: both task gauges are read from it."""
    query = select(TaskRow.status, TaskRow.pool, func.count()).group_by(TaskRow.status, TaskRow.pool)
    return {(status, pool): count for status, pool, count in session.execute(query)}


def tasks_by_state(counts: dict[tuple[str, str], int]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily("taskyard_tasks", "Tasks in the store, by state", labels=["state"])
    for status in TaskStatus:
        gauge.add_metric([status.value], sum(n for (state, _), n in counts.items() if state == status.value))
    return gauge


def queue_depth(counts: dict[tuple[str, str], int], pools: list[PoolSpec]) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily("taskyard_queue_depth", "Tasks In Queue, by pool", labels=["pool"])
    depths = {pool: n for (state, pool), n in counts.items() if state == TaskStatus.IN_QUEUE.value}
    for spec in pools:
        depths.setdefault(spec.name, 0)
    for pool, count in sorted(depths.items()):
        gauge.add_metric([pool], count)
    return gauge


def workers_by_state(session: Session) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(
        "taskyard_workers", "Workers not yet ended, by state and backend", labels=["state", "backend"]
    )
    query = select(WorkerRow.status, WorkerRow.backend, func.count()).where(WorkerRow.terminated_at.is_(None))
    for status, backend, count in session.execute(query.group_by(WorkerRow.status, WorkerRow.backend)):
        gauge.add_metric([status, backend], count)
    return gauge


def callbacks_by_state(session: Session) -> GaugeMetricFamily:
    gauge = GaugeMetricFamily(
        "taskyard_callback_deliveries", "Callback deliveries in the store, by state", labels=["state"]
    )
    query = select(CallbackDeliveryRow.state, func.count()).group_by(CallbackDeliveryRow.state)
    counts = dict(session.execute(query).all())
    for state in ("pending", "delivered", "failed"):
        gauge.add_metric([state], counts.get(state, 0))
    return gauge
