"""The control plane's store on SQLite and PostgreSQL: migrations, services, the state machine, logs
and the scheduler's claim. Every test runs on both databases through the ``db`` fixture."""

from __future__ import annotations

import gc
import hashlib
import json
import time
import warnings
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import func, inspect, select, text

from taskyard import settings
from taskyard.backends.base import Backend, LaunchRequest, WorkerState
from taskyard.config import WorkerConfig
from taskyard.errors import Conflict, IllegalTransition, InvalidInput, NotFound, Unauthorized
from taskyard.models import LogChunk
from taskyard.server.config import ServerConfig
from taskyard.server.db.models import Base, StatusChangeRow, TaskRow, UserRow, WorkerRow
from taskyard.server.db.session import MIGRATIONS, make_engine, migrate, transaction
from taskyard.server.notifier import Notifier
from taskyard.server.scheduler import Scheduler
from taskyard.server.services import logs, pools, tasks, users
from taskyard.server.services import workers as worker_service
from taskyard.server.services.lifecycle import set_status
from taskyard.status import ALLOWED, TaskStatus, WorkerStatus

S = TaskStatus


# -- helpers ------------------------------------------------------------------------------------


def reload(db, task_id: str) -> TaskRow:
    with transaction(db) as session:
        return session.get(TaskRow, task_id)


def history(db, task_id: str) -> list[tuple[str, str | None]]:
    """The task's status history as ``(status, reason)``, oldest first."""
    with transaction(db) as session:
        return history_in(session, task_id)


def history_in(session, task_id: str) -> list[tuple[str, str | None]]:
    query = select(StatusChangeRow.status, StatusChangeRow.reason).where(StatusChangeRow.task_id == task_id)
    return [tuple(row) for row in session.execute(query.order_by(StatusChangeRow.id))]


def assert_legal(changes: list[tuple[str, str | None]]) -> None:
    """Each step of a history is one the lifecycle table allows."""
    for (before, _), (after, _) in pairwise(changes):
        assert S(after) in ALLOWED.get(S(before), frozenset()), f"{before} -> {after} is not in ALLOWED"


def advance(db, task_id: str, *statuses: TaskStatus) -> None:
    """Walk a task through ``statuses`` with ``set_status``, one transaction per step."""
    for status in statuses:
        with transaction(db) as session:
            set_status(session, session.get(TaskRow, task_id), status)


def count(db, model) -> int:
    with transaction(db) as session:
        return session.scalar(select(func.count()).select_from(model))


# -- migrations ---------------------------------------------------------------------------------


def test_migrate_creates_every_table(engine):
    names = set(inspect(engine).get_table_names())
    assert {"users", "tasks", "task_status_history", "log_chunks", "workers", "alembic_version"} <= names
    assert set(Base.metadata.tables) <= names


def test_migrated_schema_matches_the_models(engine):
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert differences == []


def _columns(engine) -> dict[str, list[str]]:
    inspector = inspect(engine)
    return {table: [c["name"] for c in inspector.get_columns(table)] for table in inspector.get_table_names()}


def test_migrate_twice_is_a_noop(engine, make_user):
    make_user("alice")
    before = _columns(engine)
    migrate(engine)
    assert _columns(engine) == before
    with engine.connect() as connection:
        versions = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
        names = connection.execute(select(UserRow.name)).scalars().all()
    assert versions == [ScriptDirectory(str(MIGRATIONS)).get_current_head()]
    assert names == ["alice"]


def test_the_has_callback_migration_marks_the_tasks_that_have_one(db_url):
    """A store made before the flag: the tasks with a callback get it, the others do not."""
    from alembic import command
    from alembic.config import Config

    engine = make_engine(db_url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0013")
        _old_task(connection, "called")
        _old_task(connection, "silent")
        connection.execute(text("INSERT INTO task_callbacks (task_id, url) VALUES ('called', 'http://receiver.test')"))
    migrate(engine)
    with engine.connect() as connection:
        flags = dict(connection.execute(select(TaskRow.id, TaskRow.has_callback)).all())
    engine.dispose()
    assert flags == {"called": True, "silent": False}


def _old_task(connection, task_id: str) -> None:
    """A task row as the schema before 0014 holds it (of a user made the same way, the first time)."""
    if connection.execute(text("SELECT count(*) FROM users")).scalar() == 0:
        connection.execute(text("INSERT INTO users (name, token_hash, is_admin, created_at) "
                                "VALUES ('alice', 'h', false, CURRENT_TIMESTAMP)"))
    user_id = connection.execute(text("SELECT id FROM users")).scalar()
    columns = "id, user_id, file_name, spec, spec_hash, bundle_sha256, bundle_size, pool, status, status_at, " \
        "terminate_on_completion, attempt, log_seq, log_bytes, outputs_partial, created_at"
    connection.execute(
        text(f"INSERT INTO tasks ({columns}) VALUES (:id, :user, 'main.py', '{{}}', 's', 'b', 1, 'default', "
             "'in_queue', CURRENT_TIMESTAMP, true, 0, 0, 0, false, CURRENT_TIMESTAMP)"),
        {"id": task_id, "user": user_id},
    )


# -- users --------------------------------------------------------------------------------------


def test_create_user_and_authenticate(db):
    with transaction(db) as session:
        alice, token = users.create_user(session, "alice")
    assert token.startswith("ty_") and len(token) > 30
    with transaction(db) as session:
        assert users.authenticate(session, token).id == alice.id
        with pytest.raises(Unauthorized):
            users.authenticate(session, token + "x")
        with pytest.raises(Unauthorized):
            users.authenticate(session, "")


def test_two_users_get_different_tokens(db):
    with transaction(db) as session:
        alice, alice_token = users.create_user(session, "alice")
        bob, bob_token = users.create_user(session, "bob", is_admin=True)
    assert alice_token != bob_token
    with transaction(db) as session:
        assert users.authenticate(session, bob_token).id == bob.id
        assert users.authenticate(session, bob_token).is_admin
        assert not users.authenticate(session, alice_token).is_admin


def test_duplicate_user_name_is_a_conflict(db, make_user):
    first = make_user("alice")
    with pytest.raises(Conflict) as caught, transaction(db) as session:
        users.create_user(session, "alice")
    assert caught.value.field == "name"
    with transaction(db) as session:
        assert [u.id for u in users.list_users(session)] == [first.id]


def test_tokens_are_stored_only_hashed(db):
    with transaction(db) as session:
        _, token = users.create_user(session, "alice")
        _, chosen = users.create_user(session, "bob", token="ty_chosen-by-hand-0123456789")
    with transaction(db) as session:
        rows = session.execute(text("SELECT * FROM users")).all()
    stored = " ".join(str(value) for row in rows for value in row)
    for raw in (token, chosen):
        assert raw not in stored
        assert hashlib.sha256(raw.encode()).hexdigest() in stored


# -- tasks: creation ----------------------------------------------------------------------------


@pytest.mark.parametrize(("bundle_present", "status"), [(True, S.IN_QUEUE), (False, S.WAITING_FOR_INPUT)])
def test_create_task_starts_in_the_right_status(db, make_user, make_spec, submit, bundle_present, status):
    alice = make_user()
    task, created = submit(alice, make_spec(), bundle_present=bundle_present)
    assert created
    row = reload(db, task.id)
    assert row.status == status.value
    assert row.user_id == alice.id and row.file_name == "main.py"
    with transaction(db) as session:
        first = session.scalars(select(StatusChangeRow).where(StatusChangeRow.task_id == task.id)).all()
    assert [(r.status, r.at) for r in first] == [(status.value, row.created_at)]


def test_bundle_upload_queues_a_waiting_task(db, make_user, make_task):
    task = make_task(make_user(), bundle_present=False)
    with transaction(db) as session:
        tasks.bundle_uploaded(session, session.get(TaskRow, task.id))
    assert reload(db, task.id).status == S.IN_QUEUE.value
    assert [s for s, _ in history(db, task.id)] == [S.WAITING_FOR_INPUT.value, S.IN_QUEUE.value]


def test_same_task_id_and_spec_returns_the_same_task(db, make_user, make_spec, submit):
    alice = make_user()
    first, created = submit(alice, make_spec(task_id="job-1"))
    again, created_again = submit(alice, make_spec(task_id="job-1"))
    assert (first.id, created) == ("job-1", True)
    assert (again.id, created_again, again.created_at) == ("job-1", False, first.created_at)
    assert count(db, TaskRow) == 1
    assert len(history(db, "job-1")) == 1


def test_same_task_id_with_another_spec_is_a_conflict(db, make_user, make_spec, make_task, submit):
    alice = make_user()
    make_task(alice, task_id="job-1")
    with pytest.raises(Conflict) as caught:
        submit(alice, make_spec(task_id="job-1", file_name="other.py"))
    assert caught.value.field == "task_id"
    assert reload(db, "job-1").file_name == "main.py"


def test_same_task_id_from_another_user_is_a_conflict(db, make_user, make_spec, make_task, submit):
    alice, bob = make_user("alice"), make_user("bob")
    make_task(alice, task_id="job-1")
    with pytest.raises(Conflict) as caught:
        submit(bob, make_spec(task_id="job-1"))
    assert caught.value.field == "task_id"
    assert reload(db, "job-1").user_id == alice.id


def test_unknown_worker_image_is_invalid_input(db, make_user, make_spec, submit):
    alice = make_user()
    with pytest.raises(InvalidInput) as caught:
        submit(alice, make_spec(worker_config=WorkerConfig(worker_image="no-such-image")))
    assert caught.value.field == "worker_config.worker_image"
    assert "no-such-image" in caught.value.message
    assert count(db, TaskRow) == 0


def test_known_worker_image_is_accepted(db, make_user, make_task):
    task = make_task(make_user(), worker_config=WorkerConfig(worker_image="practicus"))
    assert reload(db, task.id).status == S.IN_QUEUE.value


# -- tasks: reading and listing -----------------------------------------------------------------


def test_get_task_is_limited_to_its_owner_and_admins(db, make_user, make_task):
    alice, bob, root = make_user("alice"), make_user("bob"), make_user("root", is_admin=True)
    task = make_task(alice)
    with transaction(db) as session:
        assert tasks.get_task(session, alice, task.id).id == task.id
        assert tasks.get_task(session, root, task.id).id == task.id
        with pytest.raises(NotFound):
            tasks.get_task(session, bob, task.id)
        with pytest.raises(NotFound):
            tasks.get_task(session, root, "no-such-task")


def test_list_tasks_newest_first_and_only_ones_own(db, make_user, make_task):
    alice, bob, root = make_user("alice"), make_user("bob"), make_user("root", is_admin=True)
    made = [make_task(owner).id for owner in (alice, bob, alice, alice, bob)]
    with transaction(db) as session:
        mine, cursor = tasks.list_tasks(session, alice)
        everyone, _ = tasks.list_tasks(session, root)
    assert cursor is None
    assert [t.id for t, _ in mine] == [made[3], made[2], made[0]]
    assert {name for _, name in mine} == {"alice"}
    assert [(t.id, name) for t, name in everyone] == [
        (made[4], "bob"),
        (made[3], "alice"),
        (made[2], "alice"),
        (made[1], "bob"),
        (made[0], "alice"),
    ]


def _all_pages(db, user, limit: int, **filters) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        with transaction(db) as session:
            rows, cursor = tasks.list_tasks(session, user, limit=limit, cursor=cursor, **filters)
        pages.append([t.id for t, _ in rows])
        if cursor is None:
            return pages
        assert len(pages) < 100, "the cursor does not move on"


def test_paging_through_120_tasks(db, make_user, make_task):
    alice = make_user()
    made = [make_task(alice).id for _ in range(120)]
    pages = _all_pages(db, alice, limit=50)
    assert [len(page) for page in pages] == [50, 50, 20]
    listed = [task_id for page in pages for task_id in page]
    assert listed == made[::-1]


def test_paging_with_equal_creation_times(db, make_user, make_task):
    """Tasks created in the same microsecond are ordered by id, so a page boundary among them is exact."""
    alice = make_user()
    made = [make_task(alice).id for _ in range(13)]
    stamps = [datetime(2030, 1, 1, tzinfo=timezone.utc), datetime(2030, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)]
    with transaction(db) as session:
        for index, task_id in enumerate(made):
            session.get(TaskRow, task_id).created_at = stamps[index % 2]
    expected = sorted(made, key=lambda task_id: (made.index(task_id) % 2, task_id), reverse=True)
    pages = _all_pages(db, alice, limit=5)
    assert [len(page) for page in pages] == [5, 5, 3]
    assert [task_id for page in pages for task_id in page] == expected


def test_list_tasks_filters_by_status_code_or_alias(db, make_user, make_task):
    alice = make_user()
    queued = {make_task(alice).id, make_task(alice).id}
    waiting = {make_task(alice, bundle_present=False).id}
    with transaction(db) as session:

        def ids(status: str) -> set[str]:
            return {t.id for t, _ in tasks.list_tasks(session, alice, status=status)[0]}

        assert ids("in_queue") == queued
        assert ids("In Queue") == queued
        assert ids("IN QUEUE") == queued
        assert ids("waiting for input") == waiting
        assert ids("Killed") == set()


def test_unknown_status_filter_is_invalid_input(db, make_user):
    alice = make_user()
    with pytest.raises(InvalidInput) as caught, transaction(db) as session:
        tasks.list_tasks(session, alice, status="no-such-status")
    assert caught.value.field == "status"


@pytest.mark.parametrize("cursor", ["garbage", "not-a-time|abc"])
def test_a_foreign_cursor_is_invalid_input(db, make_user, cursor):
    alice = make_user()
    with pytest.raises(InvalidInput) as caught, transaction(db) as session:
        tasks.list_tasks(session, alice, cursor=cursor)
    assert caught.value.field == "cursor"


# -- tasks: killing -----------------------------------------------------------------------------


@pytest.mark.parametrize("bundle_present", [True, False], ids=["queued", "waiting-for-input"])
def test_kill_before_start_ends_the_task_at_once(db, make_user, make_task, bundle_present):
    alice = make_user()
    task = make_task(alice, bundle_present=bundle_present)
    with transaction(db) as session:
        tasks.request_kill(session, alice, task.id)
    row = reload(db, task.id)
    assert row.status == S.KILLED.value
    assert row.finished_at is not None
    changes = history(db, task.id)
    assert changes[-1][0] == S.KILLED.value and changes[-1][1]
    assert len(changes) == 2
    assert_legal(changes)


@pytest.mark.parametrize("running", [S.PREPARING, S.IN_PROGRESS, S.FINALIZING])
def test_kill_while_running_asks_the_agent(db, make_user, make_task, running):
    alice = make_user()
    task = make_task(alice)
    path = [S.PREPARING, S.IN_PROGRESS, S.FINALIZING]
    advance(db, task.id, *path[: path.index(running) + 1])
    with transaction(db) as session:
        tasks.request_kill(session, alice, task.id)
    row = reload(db, task.id)
    assert row.status == S.PENDING_KILL.value
    assert (row.stop_reason, row.finished_at) == ("kill", None)  # the agent is told to stop it
    assert row.stop_requested_at is not None
    assert_legal(history(db, task.id))


@pytest.mark.parametrize("started", [False, True], ids=["killed", "pending-kill"])
def test_kill_again_changes_nothing(db, make_user, make_task, started):
    alice = make_user()
    task = make_task(alice)
    if started:
        advance(db, task.id, S.PREPARING)
    with transaction(db) as session:
        tasks.request_kill(session, alice, task.id)
    before, changes = reload(db, task.id), history(db, task.id)
    assert before.status == (S.PENDING_KILL if started else S.KILLED).value
    with transaction(db) as session:
        assert tasks.request_kill(session, alice, task.id).status == before.status
    after = reload(db, task.id)
    fields = ("status", "status_at", "reason", "stop_reason", "stop_requested_at", "finished_at")
    assert [getattr(after, f) for f in fields] == [getattr(before, f) for f in fields]
    assert history(db, task.id) == changes


def test_kill_after_success_is_a_conflict(db, make_user, make_task):
    alice = make_user()
    task = make_task(alice)
    advance(db, task.id, S.PREPARING, S.IN_PROGRESS, S.FINALIZING, S.SUCCESS)
    changes = history(db, task.id)
    with pytest.raises(Conflict), transaction(db) as session:
        tasks.request_kill(session, alice, task.id)
    assert reload(db, task.id).status == S.SUCCESS.value
    assert history(db, task.id) == changes


def test_kill_of_another_users_task_is_not_found(db, make_user, make_task):
    task = make_task(make_user("alice"))
    bob = make_user("bob")
    with pytest.raises(NotFound), transaction(db) as session:
        tasks.request_kill(session, bob, task.id)
    assert reload(db, task.id).status == S.IN_QUEUE.value


# -- the state machine --------------------------------------------------------------------------


def test_set_status_follows_the_lifecycle_table_exactly(db, make_user, make_task):
    """Every (from, to) pair: set_status makes the allowed ones and refuses the rest before touching anything.

    All pairs run in one transaction that is rolled back at the end; committed rollback is checked below.
    """
    task_id = make_task(make_user()).id
    wrong = []
    with db() as session:
        task = session.get(TaskRow, task_id)
        for current in TaskStatus:
            for new in TaskStatus:
                task.status, task.reason, task.started_at, task.finished_at = current.value, None, None, None
                session.flush()
                status_at, changes = task.status_at, history_in(session, task_id)
                try:
                    set_status(session, task, new, reason=f"{current.value}>{new.value}")
                except IllegalTransition:
                    refused = True
                else:
                    refused = False
                pair = f"{current.value} -> {new.value}"
                if new in ALLOWED.get(current, frozenset()):
                    if refused or task.status != new.value:
                        wrong.append(f"{pair} was not made")
                    elif history_in(session, task_id) != [*changes, (new.value, f"{current.value}>{new.value}")]:
                        wrong.append(f"{pair} was not added to the history")
                    elif new.is_terminal() and task.finished_at is None:
                        wrong.append(f"{pair} left finished_at empty")
                    elif new is S.IN_PROGRESS and task.started_at is None:
                        wrong.append(f"{pair} left started_at empty")
                elif not refused:
                    wrong.append(f"{pair} was not refused")
                elif (task.status, task.status_at, task.reason) != (current.value, status_at, None):
                    wrong.append(f"{pair} was refused but changed the task")
                elif history_in(session, task_id) != changes:
                    wrong.append(f"{pair} was refused but changed the history")
        session.rollback()
    assert wrong == []


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ((), S.SUCCESS),
        ((), S.IN_PROGRESS),
        ((S.PREPARING, S.IN_PROGRESS, S.FINALIZING, S.SUCCESS), S.IN_PROGRESS),
        ((S.KILLED,), S.IN_QUEUE),
    ],
    ids=["queued-to-success", "queued-to-in-progress", "success-to-in-progress", "killed-to-queued"],
)
def test_an_illegal_transition_changes_nothing(db, make_user, make_task, path, illegal):
    task = make_task(make_user())
    advance(db, task.id, *path)
    before, changes = reload(db, task.id), history(db, task.id)
    with pytest.raises(IllegalTransition), transaction(db) as session:
        set_status(session, session.get(TaskRow, task.id), illegal)
    after = reload(db, task.id)
    assert (after.status, after.status_at, after.finished_at) == (before.status, before.status_at, before.finished_at)
    assert history(db, task.id) == changes


def test_an_illegal_transition_rolls_back_its_whole_transaction(db, make_user, make_task):
    task = make_task(make_user())
    with pytest.raises(IllegalTransition), transaction(db) as session:
        row = session.get(TaskRow, task.id)
        set_status(session, row, S.PREPARING)  # legal, but in the same unit of work as the next
        set_status(session, row, S.SUCCESS)
    assert reload(db, task.id).status == S.IN_QUEUE.value
    assert history(db, task.id) == [(S.IN_QUEUE.value, None)]


# -- logs ---------------------------------------------------------------------------------------


def chunk(seq: int, text: str, stream: str = "stdout") -> LogChunk:
    return LogChunk(seq=seq, stream=stream, ts=1_700_000_000.0 + seq, text=text)


def append(db, task_id: str, *chunks: LogChunk) -> int:
    with transaction(db) as session:
        return logs.append(session, session.get(TaskRow, task_id), list(chunks))


def read_all(db, task_id: str, after: int = 0, max_bytes: int = 1 << 20) -> list[LogChunk]:
    with transaction(db) as session:
        return logs.read(session, task_id, after, max_bytes)[0]


def text_of(chunks: list[LogChunk]) -> str:
    return "".join(c.text for c in chunks)


@pytest.fixture
def log_task(make_user, make_task) -> str:
    return make_task(make_user()).id


def test_logs_append_in_order(db, log_task):
    assert append(db, log_task, chunk(1, "one\n"), chunk(2, "two\n", "stderr")) == 2
    assert append(db, log_task, chunk(4, "four\n"), chunk(3, "three\n")) == 4  # sorted before storing
    stored = read_all(db, log_task)
    assert [(c.seq, c.stream, c.text) for c in stored] == [
        (1, "stdout", "one\n"),
        (2, "stderr", "two\n"),
        (3, "stdout", "three\n"),
        (4, "stdout", "four\n"),
    ]
    assert stored[0].ts == chunk(1, "").ts
    row = reload(db, log_task)
    assert (row.log_seq, row.log_bytes) == (4, len("one\ntwo\nthree\nfour\n"))


def test_a_resent_chunk_is_stored_once(db, log_task):
    append(db, log_task, chunk(1, "one\n"), chunk(2, "two\n"))
    assert append(db, log_task, chunk(2, "two again\n"), chunk(3, "three\n")) == 3
    assert append(db, log_task, chunk(1, "one again\n")) == 3
    assert text_of(read_all(db, log_task)) == "one\ntwo\nthree\n"
    assert reload(db, log_task).log_bytes == len("one\ntwo\nthree\n")


def test_a_chunk_after_a_gap_waits_for_the_gap(db, log_task):
    assert append(db, log_task, chunk(1, "one\n"), chunk(3, "three\n")) == 1
    assert append(db, log_task, chunk(4, "four\n")) == 1
    assert [c.seq for c in read_all(db, log_task)] == [1]
    assert append(db, log_task, chunk(2, "two\n"), chunk(3, "three\n"), chunk(4, "four\n")) == 4
    assert text_of(read_all(db, log_task)) == "one\ntwo\nthree\nfour\n"


def test_read_resumes_exactly(db, log_task):
    append(db, log_task, *(chunk(seq, f"line {seq:02}\n") for seq in range(1, 21)))
    assert [c.seq for c in read_all(db, log_task, after=7)] == list(range(8, 21))
    assert read_all(db, log_task, after=20) == []
    seen, after = [], 0
    while page := read_all(db, log_task, after=after, max_bytes=30):
        assert len(page) < 20
        seen += page
        after = page[-1].seq
    assert [c.seq for c in seen] == list(range(1, 21))


def test_tail_returns_the_end(db, log_task):
    append(db, log_task, chunk(1, "a" * 100), chunk(2, "b" * 100), chunk(3, "c" * 100))
    with transaction(db) as session:
        assert logs.tail(session, log_task, 150) == "b" * 50 + "c" * 100
        assert logs.tail(session, log_task, 100) == "c" * 100
        assert logs.tail(session, log_task, 10_000) == "a" * 100 + "b" * 100 + "c" * 100


@pytest.mark.parametrize("reader", ["read", "tail"])
def test_stopping_early_closes_the_result(db, log_task, reader):
    append(db, log_task, chunk(1, "a" * 100), chunk(2, "b" * 100), chunk(3, "c" * 100))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with transaction(db) as session:
            if reader == "read":
                assert [c.seq for c in logs.read(session, log_task, 0, max_bytes=50)[0]] == [1]
            else:
                assert logs.tail(session, log_task, 50) == "c" * 50
        gc.collect()
    assert [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)] == []


def test_replacement_characters_and_non_ascii_survive(db, log_task):
    undecodable = b"ok \xff\xfe\xc3 end\n".decode("utf-8", "replace")
    assert "\ufffd" in undecodable
    append(db, log_task, chunk(1, undecodable), chunk(2, "héllo ✓ 日本\n"))
    assert [c.text for c in read_all(db, log_task)] == [undecodable, "héllo ✓ 日本\n"]
    with transaction(db) as session:
        assert logs.tail(session, log_task, 1000) == undecodable + "héllo ✓ 日本\n"


def test_a_lone_surrogate_is_stored_replaced(db, log_task):
    append(db, log_task, chunk(1, "bad \udcff byte\n"))
    assert text_of(read_all(db, log_task)) == "bad ? byte\n"


@pytest.fixture
def small_cap(monkeypatch) -> int:
    monkeypatch.setenv("TASKYARD_LOG_CAP_MB", "0.001")
    cap = settings.log_cap_bytes()
    assert 1000 < cap < 1100
    return cap


def marker_of(stored: str) -> str:
    start = stored.index("\n[taskyard] log truncated")
    return stored[start:]


def test_the_log_cap_truncates_once_with_a_marker(db, log_task, small_cap):
    assert append(db, log_task, chunk(1, "x" * (small_cap - 48))) == 1
    assert append(db, log_task, chunk(2, "y" * 100), chunk(3, "z" * 10)) == 3
    assert append(db, log_task, chunk(4, "after the cap\n")) == 4
    stored = text_of(read_all(db, log_task))
    marker = marker_of(stored)
    assert stored == "x" * (small_cap - 48) + "y" * 48 + marker
    assert stored.count("log truncated") == 1
    assert "TASKYARD_LOG_CAP_MB" in marker
    assert [c.seq for c in read_all(db, log_task)] == [1, 2]
    assert reload(db, log_task).log_seq == 4  # acknowledged, so the agent does not resend them
    with transaction(db) as session:
        assert logs.tail(session, log_task, 10_000).endswith(marker)


def test_the_log_cap_never_splits_a_character(db, log_task, small_cap):
    append(db, log_task, chunk(1, "x"), chunk(2, "é" * small_cap))
    stored = text_of(read_all(db, log_task))
    kept = stored[: stored.index("\n[taskyard]")]
    assert kept == "x" + "é" * ((small_cap - 1) // 2)
    assert "\ufffd" not in stored


def test_the_log_cap_marks_a_log_that_fills_it_exactly(db, log_task, small_cap):
    append(db, log_task, chunk(1, "x" * small_cap), chunk(2, "after the cap\n"))
    stored = text_of(read_all(db, log_task))
    assert "after the cap" not in stored
    assert stored.count("log truncated") == 1


# -- the scheduler's claim ----------------------------------------------------------------------


class RecordingBackend(Backend):
    """The backend boundary only: records what it is asked to start and starts nothing."""

    name = "recording"
    images = {"python": "nothing at all"}
    default_image = "python"

    def __init__(self, fail_with: Exception | None = None) -> None:
        self.launched: list[LaunchRequest] = []
        self.fail_with = fail_with

    def launch(self, request: LaunchRequest) -> dict:
        if self.fail_with is not None:
            raise self.fail_with
        self.launched.append(request)
        return {"slot": len(self.launched), "worker": request.worker_name}

    def poll(self, handle: dict) -> WorkerState:
        return WorkerState.RUNNING

    def terminate(self, handle: dict) -> None:
        raise AssertionError("these tests do not reap")


@pytest.fixture
def make_scheduler(db):
    made = []

    def make(backend: Backend, *, max_workers: int = 2, warm_workers: int = 0) -> Scheduler:
        sizes = ServerConfig(data_dir=Path("unused"))
        scheduler = Scheduler(db, Notifier(), backend, max_workers=max_workers, sizes=sizes, warm_workers=warm_workers)
        scheduler.control_plane_url = "http://control-plane.test"
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        for lane in scheduler.lanes.values():
            lane.close()


def fill(scheduler: Scheduler) -> tuple[list[tuple[str, str, LaunchRequest]], list[LaunchRequest]]:
    """One placing pass over the default pool, whose limits are the scheduler's max_workers and warm_workers.

    Returns the claims for new workers and the warm workers asked for; nothing is launched.
    """
    with transaction(scheduler.sessions) as session:
        live = worker_service.live_workers(session)
        return scheduler._fill(session, pools.default_spec(), live, scheduler.ledger(live))


def claim(scheduler: Scheduler) -> list[tuple[str, str, LaunchRequest]]:
    return fill(scheduler)[0]


def warm_up(scheduler: Scheduler) -> list[LaunchRequest]:
    return fill(scheduler)[1]


def workers_of(db) -> list[WorkerRow]:
    with transaction(db) as session:
        return list(session.scalars(select(WorkerRow).order_by(WorkerRow.created_at)))


def test_claim_respects_max_workers(db, make_user, make_task, make_scheduler):
    alice = make_user()
    made = [make_task(alice).id for _ in range(5)]
    backend = RecordingBackend()
    scheduler = make_scheduler(backend, max_workers=2)
    claims = claim(scheduler)
    assert [task_id for task_id, _, _ in claims] == made[:2]  # the oldest first
    assert backend.launched == []  # claiming starts nothing
    for task_id, lease, request in claims:
        row = reload(db, task_id)
        assert row.status == S.IN_QUEUE.value
        assert (row.worker_name, row.lease_token) == (request.worker_name, lease)
        assert row.lease_expires_at > datetime.now(timezone.utc)
        assert request.control_plane_url == "http://control-plane.test"
        assert (request.size, request.image) == ("X-Small", "python")
    for task_id in made[2:]:
        row = reload(db, task_id)
        assert (row.worker_name, row.lease_token) == (None, None)
    workers = workers_of(db)
    assert {w.name for w in workers} == {request.worker_name for _, _, request in claims}
    tokens = {request.worker_name: request.agent_token for _, _, request in claims}
    assert all(w.token_hash == users.hash_token(tokens[w.name]) for w in workers)
    assert all((w.status, w.user_id, w.backend) == ("Provisioning", alice.id, "recording") for w in workers)
    assert claim(scheduler) == []  # both slots are taken


def test_launch_stores_the_handle_and_clears_the_lease(db, make_user, make_task, make_scheduler):
    alice = make_user()
    for _ in range(3):
        make_task(alice)
    backend = RecordingBackend()
    scheduler = make_scheduler(backend, max_workers=2)
    claims = claim(scheduler)
    for task_id, lease, request in claims:
        scheduler._launch(task_id, lease, request)
    assert [r.worker_name for r in backend.launched] == [request.worker_name for _, _, request in claims]
    with transaction(db) as session:
        for task_id, _, request in claims:
            task, worker = session.get(TaskRow, task_id), session.get(WorkerRow, request.worker_name)
            assert (task.status, task.worker_name) == (S.IN_QUEUE.value, worker.name)
            assert (task.lease_token, task.lease_expires_at) == (None, None)
            assert json.loads(worker.handle)["worker"] == worker.name
            assert worker.status == WorkerStatus.PROVISIONING.value


@pytest.mark.parametrize("terminate_on_completion", [True, False], ids=["fresh", "kept"])
def test_a_task_killed_before_launch_stops_its_new_worker(
    db, make_user, make_task, make_scheduler, terminate_on_completion
):
    alice = make_user()
    task = make_task(alice, terminate_on_completion=terminate_on_completion)
    backend = RecordingBackend()
    scheduler = make_scheduler(backend)
    [(task_id, lease, request)] = claim(scheduler)
    with transaction(db) as session:
        tasks.request_kill(session, alice, task.id)
    scheduler._launch(task_id, lease, request)
    assert reload(db, task.id).status == S.KILLED.value
    [worker] = workers_of(db)
    assert worker.status == WorkerStatus.TERMINATING.value
    assert json.loads(worker.handle)["worker"] == worker.name  # stored, so the reaper can stop it
    assert_legal(history(db, task.id))


def test_a_failed_launch_ends_worker_and_task(db, make_user, make_task, make_scheduler):
    alice = make_user()
    task = make_task(alice)
    scheduler = make_scheduler(RecordingBackend(fail_with=RuntimeError("no capacity left")))
    for task_id, lease, request in claim(scheduler):
        scheduler._launch(task_id, lease, request)
    row = reload(db, task.id)
    assert row.status == S.RUNTIME_ERROR.value
    assert "no capacity left" in row.reason
    [worker] = workers_of(db)
    assert worker.status == WorkerStatus.FAILED.value
    assert worker.terminated_at is not None and "no capacity left" in worker.reason
    assert_legal(history(db, task.id))


def test_a_warm_worker_takes_the_next_task_without_a_launch(db, make_user, make_task, make_scheduler):
    backend = RecordingBackend()
    scheduler = make_scheduler(backend, max_workers=2, warm_workers=1)
    [request] = warm_up(scheduler)
    assert warm_up(scheduler) == []  # one is waiting already
    scheduler._launch(None, None, request)
    [warm] = workers_of(db)
    assert (warm.name, warm.user_id, warm.status) == (request.worker_name, None, WorkerStatus.PROVISIONING.value)
    assert (warm.size, warm.image) == ("X-Small", "python")
    assert warm.handle is not None

    alice = make_user()
    task = make_task(alice)
    claims, [replacement] = fill(scheduler)  # the task goes to the warm worker; another is asked for
    assert claims == [] and replacement.worker_name != warm.name
    assert backend.launched == [request]
    row = reload(db, task.id)
    assert (row.worker_name, row.lease_token) == (warm.name, None)
    given = next(w for w in workers_of(db) if w.name == warm.name)
    assert (given.user_id, given.keep) == (alice.id, False)


def test_a_full_pool_keeps_its_warm_workers_for_the_next_task(db, make_user, make_task, make_scheduler):
    """With every place taken, warm workers are still started: the next task goes to one as soon as a place
    is freed, instead of waiting for a worker to boot."""
    alice = make_user()
    first, second = make_task(alice), make_task(alice)
    backend = RecordingBackend()
    scheduler = make_scheduler(backend, max_workers=1, warm_workers=1)
    [(task_id, lease, claimed)], [warm] = fill(scheduler)  # the one place is taken, and a worker is warmed
    assert task_id == first.id
    for request in (claimed, warm):
        scheduler._launch(task_id if request is claimed else None, lease if request is claimed else None, request)
    assert fill(scheduler) == ([], [])  # full: the second task waits, beside the warm worker
    assert reload(db, second.id).worker_name is None

    with transaction(db) as session:
        worker_service.mark_ended(session, session.get(WorkerRow, claimed.worker_name), WorkerStatus.TERMINATED)
    claims, [replacement] = fill(scheduler)  # a place is free: the warm worker takes the task, and is replaced
    assert claims == [] and replacement.worker_name not in (claimed.worker_name, warm.worker_name)
    assert reload(db, second.id).worker_name == warm.worker_name


def test_a_warm_worker_of_another_size_is_not_given_the_task(db, make_user, make_task, make_scheduler):
    backend = RecordingBackend()
    scheduler = make_scheduler(backend, max_workers=2, warm_workers=1)
    [request] = warm_up(scheduler)
    scheduler._launch(None, None, request)
    task = make_task(make_user(), worker_config=WorkerConfig(worker_size="Large"))
    [(task_id, _, claimed)] = claim(scheduler)
    assert task_id == task.id and claimed.size == "Large"
    with transaction(db) as session:
        assert session.get(WorkerRow, request.worker_name).user_id is None


def test_a_worker_stuck_in_provisioning_is_replaced(db, make_user, make_task, make_scheduler, monkeypatch):
    monkeypatch.setenv("TASKYARD_PROVISION_TIMEOUT", "0.2")
    task_id = make_task(make_user()).id
    backend = RecordingBackend()
    scheduler = make_scheduler(backend, max_workers=1)
    [(_, lease, request)] = claim(scheduler)
    scheduler._launch(task_id, lease, request)  # started, but its agent never calls in
    time.sleep(0.3)
    scheduler._reconcile([pools.default_spec()])
    stuck = next(w for w in workers_of(db) if w.name == request.worker_name)
    assert (stuck.status, stuck.reason) == ("Terminating", "lost: it did not start in time")
    row = reload(db, task_id)
    assert (row.status, row.worker_name) == (S.IN_QUEUE.value, None)  # back in the queue, not failed
    assert "did not start in time" in row.reason and "queued again" in row.reason
    [(again, _, replacement)] = claim(scheduler)
    assert again == task_id and replacement.worker_name != request.worker_name


def test_position_in_queue_is_1_or_more_and_puts_tasks_with_a_worker_first(db, make_user, make_task):
    user = make_user()
    first, second, third = (make_task(user) for _ in range(3))
    with transaction(db) as session:
        session.get(TaskRow, third.id).worker_name = "w-being-readied"
    with transaction(db) as session:
        rows = [session.get(TaskRow, t.id) for t in (first, second, third)]
        assert all(row.status == S.IN_QUEUE.value for row in rows)
        assert [tasks.position_in_queue(session, row) for row in rows] == [2, 3, 1]
