"""The queries that walk the queue find their rows through its index (SQLite's query plans), not by a scan.

With a deep queue, a plan that reads every queued task makes each scheduler pass, each reconcile
and each task's queue position cost as much as the queue is long.
"""

from __future__ import annotations

import pytest
from sqlalchemy.dialects import sqlite

from taskyard.server import scheduler
from taskyard.server.db.session import transaction
from taskyard.server.services import tasks

QUEUE_INDEX = "ix_tasks_queue"


pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)  # the plans are SQLite's


def _plan(session, statement) -> str:
    """SQLite's plan for ``statement``; the values bound do not change it, so all are NULL."""
    compiled = statement.compile(dialect=sqlite.dialect(), compile_kwargs={"render_postcompile": True})
    nulls = (None,) * len(compiled.positiontup or ())
    rows = session.connection().exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", nulls)
    return " / ".join(row[3] for row in rows)


def test_the_schedulers_next_tasks_of_a_pool_are_a_range_of_the_queue_index(db):
    with transaction(db) as session:
        plan = _plan(session, scheduler._QUEUED)
    assert f"INDEX {QUEUE_INDEX} (status=? AND worker_name=? AND pool=?)" in plan, plan
    assert "TEMP B-TREE" not in plan, plan  # no sort of the pool's queue


def test_the_orphan_repair_reads_only_the_queued_tasks_that_have_a_worker(db):
    with transaction(db) as session:
        plan = _plan(session, scheduler._ORPHANS)
    assert f"SEARCH tasks USING INDEX {QUEUE_INDEX} (status=? AND worker_name>?)" in plan, plan


@pytest.mark.parametrize("assigned", [True, False])
def test_a_queue_position_counts_a_range_of_the_queue_index(db, make_user, make_task, assigned):
    task = make_task(make_user(), pool="default")
    with transaction(db) as session:
        plan = _plan(session, tasks.queued_ahead_query(task, assigned=assigned))
    assert f"COVERING INDEX {QUEUE_INDEX} (status=? AND worker_name" in plan, plan
