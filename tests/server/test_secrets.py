"""The vault's store on SQLite and PostgreSQL: sealed values, who sees what, key changes.

Every test runs on both databases through the ``db`` fixture; the vault's key file lives in the
test's own folder, apart from the database, as it does in a server's home.
"""

from __future__ import annotations

import stat
import time
from datetime import UTC
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError

from taskyard.config import GitConfig, WorkerConfig
from taskyard.errors import ConfigError, Conflict, Forbidden, InvalidInput, NotFound
from taskyard.models import AgentEvent, AgentFinish, AgentLogs, LogChunk, PoolSpec
from taskyard.server.config import builtin_sizes
from taskyard.server.db.models import SecretRow, StatusChangeRow, TaskRow, WorkerRow, utcnow
from taskyard.server.db.session import transaction
from taskyard.server.services import agent as agent_service
from taskyard.server.services import pools
from taskyard.server.services import secrets as secret_service
from taskyard.server.vault import KEY_FILE, Vault, key_id
from taskyard.status import TaskStatus

VALUE = "vault-test-value-9f3c1e"


@pytest.fixture
def vault(tmp_path) -> Vault:
    return Vault.load(tmp_path / "home", None)


@pytest.fixture
def put(db, vault):
    """``put(user, name, value, shared=False)``: put_secret in a transaction of its own."""

    def run(user, name: str, value: str = VALUE, *, shared: bool = False) -> SecretRow:
        with transaction(db) as session:
            return secret_service.put_secret(session, vault, user, name, value, shared=shared)[0]

    return run


def read(db, vault, user, name: str, **options) -> str:
    with transaction(db) as session:
        return secret_service.get_secret(session, vault, user, name, **options)[1]


def names(db, user) -> list[tuple[str, bool]]:
    with transaction(db) as session:
        return [(row.name, row.user_id is None) for row in secret_service.list_secrets(session, user)]


def check(db, user, config: WorkerConfig) -> None:
    with transaction(db) as session:
        secret_service.check_task_config(session, user, config)


# -- at rest ------------------------------------------------------------------------------------------


def test_the_database_holds_no_value_in_clear(db, db_url, engine, vault, make_user, put):
    put(make_user("alice"), "DB_PASSWORD")
    with engine.connect() as connection:
        row = connection.execute(text("SELECT * FROM secrets")).one()
    assert VALUE not in repr(tuple(row)) and VALUE.encode() not in bytes(row.value)
    if db_url.startswith("sqlite"):
        path = Path(db_url.removeprefix("sqlite:///"))
        files = [file for file in path.parent.iterdir() if file.name.startswith(path.name)]  # and its -wal
        assert files and all(VALUE.encode() not in file.read_bytes() for file in files)
    assert vault.open(bytes(row.value), row.key_id) == VALUE


def test_the_key_file_is_the_servers_users_alone_and_opens_the_values(tmp_path, vault):
    path = tmp_path / "home" / KEY_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token, sealed_by = vault.seal(VALUE)
    assert sealed_by == key_id(path.read_text().strip())
    assert Fernet(path.read_text().strip()).decrypt(token).decode() == VALUE
    assert Vault.load(tmp_path / "home", None).open(token, sealed_by) == VALUE  # the same key at the next start


def test_a_key_from_the_environment_writes_no_file(tmp_path):
    key = Fernet.generate_key().decode()
    vault = Vault.load(tmp_path, key)
    assert vault.from_env and vault.key_id == key_id(key)
    assert not (tmp_path / KEY_FILE).exists()


# -- who sees what ----------------------------------------------------------------------------------


def test_put_get_list_delete(db, vault, make_user, put):
    alice = make_user("alice")
    first = put(alice, "API_KEY", "one-value")
    again = put(alice, "API_KEY", "two-value")
    assert again.id == first.id and again.updated_at >= first.updated_at
    assert read(db, vault, alice, "API_KEY") == "two-value"
    assert names(db, alice) == [("API_KEY", False)]
    with transaction(db) as session:
        info = secret_service.to_info(secret_service.list_secrets(session, alice)[0])
        assert info.age_days == 0 and not info.shared
        secret_service.delete_secret(session, alice, "API_KEY")
    with pytest.raises(NotFound, match="API_KEY"):
        read(db, vault, alice, "API_KEY")


def test_another_users_secret_cannot_be_listed_read_deleted_or_named(db, vault, make_user, put):
    alice, bob, root = make_user("alice"), make_user("bob"), make_user("root", is_admin=True)
    put(alice, "ALICE_TOKEN")
    assert names(db, bob) == [] and names(db, root) == []
    for user in (bob, root):
        with pytest.raises(NotFound, match="ALICE_TOKEN"):
            read(db, vault, user, "ALICE_TOKEN")
        with pytest.raises(NotFound, match="ALICE_TOKEN"), transaction(db) as session:
            secret_service.delete_secret(session, user, "ALICE_TOKEN")
    configs = [
        WorkerConfig(personal_secrets=["ALICE_TOKEN"]),
        WorkerConfig(personal_secrets=["ALICE_TOKEN:MINE"]),
        WorkerConfig(shared_secrets=["ALICE_TOKEN"]),
        WorkerConfig(git_configs=[GitConfig(remote_url="https://example.com/r.git", secret_name="ALICE_TOKEN")]),
    ]
    for config in configs:
        with pytest.raises(InvalidInput, match="'ALICE_TOKEN'"):
            check(db, bob, config)
    check(db, alice, WorkerConfig(personal_secrets=["ALICE_TOKEN"]))


def test_shared_secrets_are_an_admins_to_set_and_everyones_to_read(db, vault, make_user, put):
    alice, root = make_user("alice"), make_user("root", is_admin=True)
    with pytest.raises(Forbidden):
        put(alice, "REGISTRY", shared=True)
    put(root, "REGISTRY", "shared-value", shared=True)
    put(alice, "REGISTRY", "alices-own")  # a personal one of the same name is another secret
    assert read(db, vault, alice, "REGISTRY") == "alices-own"
    assert read(db, vault, alice, "REGISTRY", shared=True) == "shared-value"
    assert names(db, alice) == [("REGISTRY", False), ("REGISTRY", True)]
    check(db, alice, WorkerConfig(shared_secrets=["REGISTRY:REGISTRY_TOKEN"]))
    with pytest.raises(Forbidden), transaction(db) as session:
        secret_service.delete_secret(session, alice, "REGISTRY", shared=True)


def test_a_shared_name_is_unique_in_the_database_itself(db, vault, make_user, put):
    root = make_user("root", is_admin=True)
    put(root, "ONE", shared=True)
    token, sealed_by = vault.seal("x")
    with pytest.raises(IntegrityError), transaction(db) as session:
        session.add(SecretRow(name="ONE", user_id=None, value=token, key_id=sealed_by))


@pytest.mark.parametrize(
    "config, wrong",
    [
        (WorkerConfig(personal_secrets=["db.password"]), "cannot be an environment variable"),
        (WorkerConfig(personal_secrets=["A_KEY", "B_KEY:A_KEY"]), "A_KEY would be set both"),
        (WorkerConfig(personal_secrets=["A_KEY"], env_variables={"A_KEY": "x"}), "A_KEY would be set both"),
    ],
)
def test_secret_variables_must_be_names_and_unique(db, make_user, put, config, wrong):
    alice = make_user("alice")
    for name in ("db.password", "A_KEY", "B_KEY"):
        put(alice, name)
    with pytest.raises(InvalidInput, match=wrong):
        check(db, alice, config)
    check(db, alice, WorkerConfig(personal_secrets=["db.password:DB_PASSWORD", "A_KEY", "B_KEY:OTHER"]))


def test_a_pool_names_shared_secrets_only(db, vault, make_user, put):
    alice, root = make_user("alice"), make_user("root", is_admin=True)
    put(alice, "MINE")
    put(root, "OURS", shared=True)

    def create(name: str, config: WorkerConfig):
        with transaction(db) as session:
            spec = PoolSpec(name=name, worker_config=config)
            return pools.create_pool(
                session, root, spec, backends=["local"], sizes=builtin_sizes(), capacity=None, server_max=4
            )

    with pytest.raises(InvalidInput, match="'MINE'"):
        create("p1", WorkerConfig(personal_secrets=["MINE"]))
    with pytest.raises(InvalidInput, match="'MINE'"):
        create("p2", WorkerConfig(git_configs=[GitConfig(remote_url="https://example.com/r.git", secret_name="MINE")]))
    create("p3", WorkerConfig(shared_secrets=["OURS"]))


# -- handing them to a task ---------------------------------------------------------------------------


def _running_worker(session, task: TaskRow) -> WorkerRow:
    worker = WorkerRow(
        name="tw-secrets",
        user_id=task.user_id,
        pool="default",
        backend="test",
        status="Running",
        size="X-Small",
        image="python",
        token_hash="0" * 64,
        keep=False,
        created_at=utcnow(),
    )
    session.add(worker)
    session.get(TaskRow, task.id).worker_name = worker.name
    return worker


def test_the_assignment_carries_the_values_and_the_spec_does_not(db, vault, make_user, put, make_task):
    alice, root = make_user("alice"), make_user("root", is_admin=True)
    put(alice, "MINE", "personal-value")
    put(root, "OURS", "shared-value", shared=True)
    put(root, "GIT", "git-token-value", shared=True)
    config = WorkerConfig(
        personal_secrets=["MINE", "MINE:RENAMED"],
        shared_secrets=["OURS:SHARED_ONE"],
        git_configs=[
            GitConfig(remote_url="https://example.com/a.git"),
            GitConfig(remote_url="https://example.com/b.git", secret_name="GIT"),
        ],
    )
    task = make_task(alice, worker_config=config)
    with transaction(db) as session:
        answer = agent_service.next_task(session, _running_worker(session, task), vault)
        stored = session.get(TaskRow, task.id).spec
    assert answer is not None and answer.task is not None
    expected = {"MINE": "personal-value", "RENAMED": "personal-value", "SHARED_ONE": "shared-value"}
    assert answer.task.secret_env == expected
    assert [repo.get("token") for repo in answer.task.git_configs] == [None, "git-token-value"]
    assert "value" not in stored and "git-token" not in stored
    assert "personal-value" not in repr(answer.task)


def test_a_secret_deleted_before_its_task_starts_ends_it_runtime_error(db, vault, make_user, put, make_task):
    alice = make_user("alice")
    put(alice, "GONE")
    task = make_task(alice, worker_config=WorkerConfig(personal_secrets=["GONE"]))
    with transaction(db) as session:
        secret_service.delete_secret(session, alice, "GONE")
    with transaction(db) as session:
        answer = agent_service.next_task(session, _running_worker(session, task), vault)
        row = session.get(TaskRow, task.id)
        assert answer is not None and answer.task is None and answer.terminate
        assert (row.status, row.reason) == ("runtime_error", "secret 'GONE' was deleted after the task was submitted")


# -- keys -------------------------------------------------------------------------------------------


def _sealed(db) -> list[tuple[bytes, str]]:
    with transaction(db) as session:
        return [(row.value, row.key_id) for row in session.scalars(select(SecretRow).order_by(SecretRow.id))]


def test_rotation_seals_every_value_again_and_replaces_the_key_file(db, tmp_path, vault, make_user, put):
    alice, root = make_user("alice"), make_user("root", is_admin=True)
    put(alice, "A", "value-a")
    put(root, "B", "value-b", shared=True)
    path = tmp_path / "home" / KEY_FILE
    old_key, before = path.read_text().strip(), _sealed(db)
    rotation = secret_service.rotate_key(db, vault)
    new_key = path.read_text().strip()
    assert rotation.resealed == 2 and rotation.key_id == key_id(new_key) != key_id(old_key)
    assert "\n" not in new_key and stat.S_IMODE(path.stat().st_mode) == 0o600
    after = _sealed(db)
    assert {sealed_by for _, sealed_by in after} == {key_id(new_key)}
    with pytest.raises(InvalidToken):
        Fernet(old_key).decrypt(after[0][0])
    assert Fernet(old_key).decrypt(before[0][0]) == b"value-a"
    assert read(db, vault, alice, "A") == "value-a"
    assert read(db, Vault.load(tmp_path / "home", None), root, "B", shared=True) == "value-b"


def test_a_rotation_cut_short_is_finished_at_the_next_start(db, tmp_path, vault, make_user, put):
    put(make_user("alice"), "A", "value-a")
    vault.add_key()  # the new key is in the file, first; the values are still under the old one
    reopened = Vault.load(tmp_path / "home", None)
    assert len(reopened.key_ids()) == 2
    secret_service.settle_keys(db, reopened)
    assert {sealed_by for _, sealed_by in _sealed(db)} == {reopened.key_id}
    assert len((tmp_path / "home" / KEY_FILE).read_text().split()) == 1


def test_keys_from_the_environment_are_not_rotated_here_but_at_start(db, tmp_path, make_user, put):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    alice = make_user("alice")
    with transaction(db) as session:
        secret_service.put_secret(session, Vault.load(tmp_path, old), alice, "A", "value-a")
    with pytest.raises(Conflict, match="TASKYARD_VAULT_KEY"):
        secret_service.rotate_key(db, Vault.load(tmp_path, old))
    both = Vault.load(tmp_path, f"{new},{old}")
    secret_service.settle_keys(db, both)
    assert _sealed(db)[0][1] == key_id(new)
    assert read(db, Vault.load(tmp_path, new), alice, "A") == "value-a"


def test_a_start_without_the_key_the_database_needs_is_refused(db, tmp_path, vault, make_user, put):
    put(make_user("alice"), "A")
    stranger = Vault.load(tmp_path / "other-home", None)
    with pytest.raises(ConfigError, match=f"{vault.key_id} \\(1 secret\\)"):
        secret_service.settle_keys(db, stranger)


def test_a_task_handed_out_whose_answer_was_lost_is_handed_out_again(db, vault, make_user, make_task):
    """The agent asks again (through another server, say): the task it never got comes again, as the same attempt."""
    task = make_task(make_user("alice"))
    with transaction(db) as session:
        first = agent_service.next_task(session, _running_worker(session, task), vault)
    with transaction(db) as session:
        again = agent_service.next_task(session, session.get(WorkerRow, "tw-secrets"), vault)
        row = session.get(TaskRow, task.id)
        assert first is not None and again is not None and again.task is not None
        assert again.task.task_id == first.task.task_id == task.id
        assert (row.status, row.attempt) == ("preparing", 1)


def test_a_status_said_again_after_its_answer_was_lost_is_acknowledged(db, vault, make_user, make_task):
    """The agent repeats "In Progress" (to another server, say): the task stays as it is, no 409."""
    task = make_task(make_user("alice"))
    started = AgentEvent(status=TaskStatus.IN_PROGRESS, at=time.time())
    with transaction(db) as session:
        agent_service.next_task(session, _running_worker(session, task), vault)
    for _ in range(2):
        with transaction(db) as session:
            assert agent_service.event(session, session.get(WorkerRow, "tw-secrets"), task.id, started) is False
    with transaction(db) as session:
        row = session.get(TaskRow, task.id)
        assert (row.status, row.attempt) == (TaskStatus.IN_PROGRESS.value, 1)


def _history(session, task_id: str) -> list[tuple[str, float]]:
    changes = session.scalars(select(StatusChangeRow).where(StatusChangeRow.task_id == task_id)
                              .order_by(StatusChangeRow.id))
    return [(change.status, change.at.replace(tzinfo=UTC).timestamp()) for change in changes]


def test_a_task_that_ended_at_once_has_its_start_told_with_its_finish(db, vault, make_user, make_task):
    """No In Progress event came: the finish's ``started_at`` puts In Progress in the history, at that time."""
    task = make_task(make_user("alice"))
    with transaction(db) as session:
        agent_service.next_task(session, _running_worker(session, task), vault)
    began = time.time()
    ended = began + 0.01
    finish = AgentFinish(exit_code=0, started_at=began, exited_at=ended, ended_at=ended)
    with transaction(db) as session:
        agent_service.finish(session, session.get(WorkerRow, "tw-secrets"), task.id, finish)
    with transaction(db) as session:
        history = _history(session, task.id)
        row = session.get(TaskRow, task.id)
    assert [status for status, _ in history][-4:] == ["preparing", "in_progress", "finalizing", "success"]
    assert dict(history)["in_progress"] == pytest.approx(began, abs=0.002)
    assert row.started_at is not None


def test_a_first_output_before_the_start_event_tells_the_start(db, vault, make_user, make_task):
    """Logs carrying ``started_at`` move the task to In Progress before their lines are kept; the event
    after them (or a second start) changes nothing."""
    task = make_task(make_user("alice"))
    with transaction(db) as session:
        agent_service.next_task(session, _running_worker(session, task), vault)
    began = time.time()
    output = AgentLogs(chunks=[LogChunk(seq=1, stream="stdout", ts=began, text="hi\n")], started_at=began)
    with transaction(db) as session:
        assert agent_service.append_logs(session, session.get(WorkerRow, "tw-secrets"), task.id, output) == (1, False)
        assert session.get(TaskRow, task.id).status == TaskStatus.IN_PROGRESS.value
    with transaction(db) as session:
        started = AgentEvent(status=TaskStatus.IN_PROGRESS, at=time.time())
        assert agent_service.event(session, session.get(WorkerRow, "tw-secrets"), task.id, started) is False
    with transaction(db) as session:
        assert [status for status, _ in _history(session, task.id)].count("in_progress") == 1


def test_a_task_that_ended_at_once_with_outputs_has_its_start_told_with_its_finalizing(db, vault, make_user, make_task):
    """Its outputs are uploaded after Finalizing: that event, the first after the start, carries it."""
    task = make_task(make_user("alice"))
    with transaction(db) as session:
        agent_service.next_task(session, _running_worker(session, task), vault)
    began = time.time()
    finalizing = AgentEvent(status=TaskStatus.FINALIZING, at=began + 0.01, started_at=began)
    with transaction(db) as session:
        assert agent_service.event(session, session.get(WorkerRow, "tw-secrets"), task.id, finalizing) is False
    with transaction(db) as session:
        history = _history(session, task.id)
    assert [status for status, _ in history][-3:] == ["preparing", "in_progress", "finalizing"]
    assert dict(history)["in_progress"] == pytest.approx(began, abs=0.002)
