"""A page's queue positions at once (the dashboard's table) agree with each task's own, on both stores.

Queued tasks with a worker being readied come first in their pool, then the others, each group by
submission time and then id; tasks submitted in one batch may share their submission time.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from taskyard.server.db.models import TaskRow
from taskyard.server.db.session import transaction
from taskyard.server.services import tasks
from taskyard.status import TaskStatus


def _queue(db, make_user, make_task) -> list[str]:
    """14 queued tasks in two pools: three of pool p with a worker, three sharing one submission time,
    and one that ended (no position)."""
    user = make_user()
    made = [make_task(user).id for _ in range(14)]
    with transaction(db) as session:
        rows = {row.id: row for row in session.scalars(select(TaskRow).where(TaskRow.id.in_(made)))}
        for index in range(14):
            rows[made[index]].pool = "p" if index < 12 else "q"
        for index in (2, 7, 9):
            rows[made[index]].worker_name = f"w-{index}"
        shared = rows[made[4]].created_at
        for index in (5, 6):
            rows[made[index]].created_at = shared
        rows[made[10]].created_at = shared - timedelta(seconds=1)  # submitted earlier, say in another batch
        rows[made[11]].status = TaskStatus.SUCCESS.value
    return made


def _each_on_its_own(db, ids: list[str]) -> dict[str, int]:
    with transaction(db) as session:
        found = [session.get(TaskRow, task_id) for task_id in ids]
        return {task.id: position for task in found if (position := tasks.position_in_queue(session, task))}


def _as_a_page(db, ids: list[str]) -> dict[str, int]:
    with transaction(db) as session:
        return tasks.queue_positions(session, [session.get(TaskRow, task_id) for task_id in ids])


def test_every_slice_of_the_queue_gets_the_positions_its_tasks_have_alone(db, make_user, make_task):
    made = _queue(db, make_user, make_task)
    alone = _each_on_its_own(db, made)
    assert sorted(position for task_id, position in alone.items() if task_id in made[:12]) == list(range(1, 12))
    assert made[11] not in alone
    newest_first = made[::-1]
    for size in (1, 3, 5, 14):
        for start in range(0, len(made) - size + 1):
            page = newest_first[start:start + size]
            assert _as_a_page(db, page) == {task_id: alone[task_id] for task_id in page if task_id in alone}


def test_a_page_with_gaps_gets_the_same_positions(db, make_user, make_task):
    """A filtered page (one user's, say) holds tasks far apart in the queue, with others between them."""
    made = _queue(db, make_user, make_task)
    page = [made[13], made[9], made[6], made[1]]
    alone = _each_on_its_own(db, page)
    assert _as_a_page(db, page) == alone and len(alone) == 4
