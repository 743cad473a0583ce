"""The vault end to end: real control planes, real workers and sandboxes, the SDK, the CLI and REST.

Values are made fresh in each test (``fresh()``), so that finding one anywhere is a finding.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sqlite3
import stat
import time
from pathlib import Path

import pytest
from cryptography.fernet import Fernet, InvalidToken
from typer.testing import CliRunner

import taskyard
from taskyard import GitConfig, TaskStatus, WorkerConfig, bundle
from taskyard.cli import app
from taskyard.errors import Conflict, Forbidden, InvalidInput, NotFound, ServerUnavailable
from taskyard.models import TaskSpec
from taskyard.server.vault import KEY_FILE, key_id

from support import Server, cwd_of, default_client_of, environ_of, processes_in, wait_for, write

S = TaskStatus
MASK = "*****"


@pytest.fixture(scope="module")
def vs(tmp_path_factory):
    """A control plane of this module's own: its key gets rotated."""
    server = Server(tmp_path_factory.mktemp("vault")).start()
    yield server
    server.stop()


def fresh(prefix: str = "val") -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def name(prefix: str) -> str:
    return f"{prefix}_{time.monotonic_ns()}"


def sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def run(server_client, folder: Path, code: str, config: WorkerConfig, file: str = "task.py") -> taskyard.Task:
    write(folder, file, code)
    return taskyard.submit(file, files_path=folder, worker_config=config, client=server_client)


def user(vs: Server, prefix: str):
    return vs.user_client(f"{prefix}-{time.monotonic_ns()}")


def db_bytes(home: Path) -> bytes:
    return b"".join(path.read_bytes() for path in sorted(home.glob("taskyard.db*")))


# -- SDK and REST -------------------------------------------------------------------------------------


def test_sdk_create_get_list_delete(vs):
    secret, value = name("SDK"), fresh()
    taskyard.vault.create_or_update_secret(secret, "first-value", client=vs.client)
    taskyard.vault.create_or_update_secret(secret, value, client=vs.client)
    assert taskyard.vault.get_secret(secret, client=vs.client) == (value, 0)
    listed = {info.name: info for info in taskyard.vault.list_secrets(client=vs.client)}
    assert listed[secret].age_days == 0 and not listed[secret].shared
    assert not hasattr(listed[secret], "value")
    taskyard.vault.delete_secret(secret, client=vs.client)
    with pytest.raises(NotFound, match=secret):
        taskyard.vault.get_secret(secret, client=vs.client)


def test_rest_under_api_v1_secrets(vs):
    secret, value = name("REST"), fresh()
    http = vs.client
    assert http.request("PUT", f"/secrets/{secret}", json={"value": value}).status_code == 201
    assert http.request("PUT", f"/secrets/{secret}", json={"value": value}).status_code == 200
    listed = http.request("GET", "/secrets").json()
    assert value not in str(listed) and {"name", "shared", "age_days"} <= set(listed[0])
    assert http.request("GET", f"/secrets/{secret}").json()["value"] == value
    assert http.request("DELETE", f"/secrets/{secret}").status_code == 204
    with pytest.raises(InvalidInput, match="secret name"):
        http.request("PUT", "/secrets/bad%20name", json={"value": value})


def test_the_sqlite_file_holds_no_value(vs):
    value = fresh("at-rest")
    taskyard.vault.create_or_update_secret(name("AT_REST"), value, client=vs.client)
    data = db_bytes(vs.home)
    assert data and value.encode() not in data


def test_the_postgresql_row_holds_no_value(pg_server, pg_url):
    import psycopg

    secret, value = name("PG_AT_REST"), fresh("at-rest")
    taskyard.vault.create_or_update_secret(secret, value, client=pg_server.client)
    with psycopg.connect(pg_url) as connection:
        row = connection.execute("SELECT * FROM secrets WHERE name = %s", (secret,)).fetchone()
    assert row is not None and value not in repr(row) and value.encode() not in b"".join(
        bytes(cell) for cell in row if isinstance(cell, (bytes, memoryview))
    )
    assert taskyard.vault.get_secret(secret, client=pg_server.client)[0] == value


# -- into tasks -----------------------------------------------------------------------------------------

INJECTED = r"""
import hashlib, os, sys, time
value = os.environ["RENAMED"]
print("same", os.environ[os.environ["WHICH"]] == value, hashlib.sha256(value.encode()).hexdigest())
print("ready", flush=True)
time.sleep(3)
sys.stdout.write("half:" + value[:7]); sys.stdout.flush()
time.sleep(0.5)
sys.stdout.write(value[7:] + ":done\n"); sys.stdout.flush()
print("err", value, file=sys.stderr)
"""


def test_a_task_gets_its_secret_as_env_and_nowhere_else(vs, tmp_path):
    secret, value = name("INJ"), fresh("inj")
    taskyard.vault.create_or_update_secret(secret, value, client=vs.client)
    config = WorkerConfig(
        personal_secrets=[secret, f"{secret}:RENAMED"],
        env_variables={"WHICH": secret},
        startup_script='echo "startup $(printf %s "$RENAMED" | sha256sum | cut -c1-64)"; echo "startup-raw $RENAMED"',
    )
    task = run(vs.client, tmp_path, INJECTED, config)
    wait_for(lambda: "ready" in task.logs(), timeout=30)
    folder = vs.home / "workers" / task.worker_name
    _nowhere_but_the_tasks_env(folder, value)
    streamed = list(task.stream_logs())
    chunks = [text for _, text in streamed]
    assert task.wait(timeout=30) is S.SUCCESS, task.logs()
    logs = task.logs()
    stdout, stderr = ("".join(text for kind, text in streamed if kind == stream) for stream in ("stdout", "stderr"))
    for line in (f"startup {sha(value)}", f"startup-raw {MASK}", f"same True {sha(value)}", f"half:{MASK}:done"):
        assert line in stdout.splitlines(), logs  # each stream on its own: the log interleaves them
    assert f"err {MASK}" in stderr.splitlines(), logs
    assert not any(value[:7] in text for text in chunks)  # not even the first piece of the split value
    assert value[:7] not in taskyard.Worker(task.worker_name, client=vs.client).get_logs()


def _nowhere_but_the_tasks_env(folder: Path, value: str) -> None:
    """``value`` is in the environment of the worker's task, in no command line, no file of its folder."""
    for pid in (int(entry) for entry in os.listdir("/proc") if entry.isdigit()):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        assert value.encode() not in cmdline, f"pid {pid}: {cmdline!r}"
    files = [path for path in folder.rglob("*") if path.is_file() and not path.is_symlink()]
    assert files and all(value.encode() not in _bytes_of(path) for path in files)
    holders = [pid for pid in processes_in(folder) if value in (environ_of(pid) or {}).values()]
    assert holders, "the task's process has the value in its environment"
    agents = [pid for pid in processes_in(folder) if cwd_of(pid) == str(folder)]
    assert agents and all(value not in str(environ_of(pid)) for pid in agents)


def _bytes_of(path: Path) -> bytes:
    """What a file holds; nothing if it went away meanwhile (the worker goes on while we look)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


def test_a_git_token_reaches_the_agent_and_is_masked_in_errors(vs, tmp_path):
    secret, token = name("GIT"), fresh("tok")
    taskyard.vault.create_or_update_secret(secret, token, client=vs.client)
    repo = GitConfig(remote_url=f"file:///nonexistent/{token}/repo.git", secret_name=secret, local_path="r")
    task = run(vs.client, tmp_path, "print('never')\n", WorkerConfig(git_configs=[repo]))
    assert task.wait(timeout=30) is S.RUNTIME_ERROR
    info = task.info
    texts = [info.reason or "", task.logs(), *(change.reason or "" for change in info.status_history)]
    assert "git clone" in info.reason and MASK in info.reason
    assert all(token not in text for text in texts), texts


def test_shared_secrets_reach_every_users_tasks(vs, tmp_path):
    secret, value = name("SHARED"), fresh("shared")
    taskyard.vault.create_or_update_secret(secret, value, shared=True, client=vs.client)
    bob = user(vs, "bob")
    with pytest.raises(Forbidden):
        taskyard.vault.create_or_update_secret(name("NOT_BOBS"), "x" * 8, shared=True, client=bob)
    assert any(info.name == secret and info.shared for info in taskyard.vault.list_secrets(client=bob))
    code = "import os\nprint(os.environ['FROM_ADMIN'])\n"
    task = run(bob, tmp_path, code, WorkerConfig(shared_secrets=[f"{secret}:FROM_ADMIN"]))
    assert task.wait(timeout=30) is S.SUCCESS
    assert task.logs() == f"{MASK}\n"


def test_another_users_secret_cannot_be_listed_read_or_given_to_a_task(vs, tmp_path):
    alice, bob = user(vs, "alice"), user(vs, "bob")
    secret = name("ALICE_ONLY")
    taskyard.vault.create_or_update_secret(secret, fresh(), client=alice)
    assert secret not in {info.name for info in taskyard.vault.list_secrets(client=bob)}
    with pytest.raises(NotFound, match=secret):
        taskyard.vault.get_secret(secret, client=bob)
    with pytest.raises(NotFound, match=secret):
        taskyard.vault.delete_secret(secret, client=bob)
    configs = [
        WorkerConfig(personal_secrets=[secret]),
        WorkerConfig(shared_secrets=[f"{secret}:X"]),
        WorkerConfig(git_configs=[GitConfig(remote_url="https://example.com/r.git", secret_name=secret)]),
    ]
    for config in configs:
        with pytest.raises(InvalidInput, match=secret):
            run(bob, tmp_path, "print(1)\n", config)
    with pytest.raises(InvalidInput, match=secret):
        taskyard.Pool.create(name("p").replace("_", "-"), worker_config=configs[0], client=vs.client)  # an admin
    assert bob.list_tasks().tasks == []  # nothing was started


def test_a_secret_deleted_before_its_task_starts_ends_it_runtime_error(vs, tmp_path):
    secret = name("GONE")
    taskyard.vault.create_or_update_secret(secret, fresh(), client=vs.client)
    write(tmp_path, "task.py", f"print({fresh()!r})\n")  # new content: its upload is asked for
    with bundle.pack(tmp_path) as packed:
        spec = TaskSpec(file_name="task.py", worker_config=WorkerConfig(personal_secrets=[secret]),
                        bundle_sha256=packed.sha256, bundle_size=packed.size)
        info = vs.client.submit(spec)
        assert info.upload_required
        taskyard.vault.delete_secret(secret, client=vs.client)
        vs.client.upload_bundle(info.id, packed.path)
    task = taskyard.Task(info.id, client=vs.client)
    assert task.wait(timeout=30) is S.RUNTIME_ERROR
    assert task.info.reason == f"secret {secret!r} was deleted after the task was submitted"


# -- keys -----------------------------------------------------------------------------------------------


def _row(home: Path, secret: str) -> tuple[bytes, str]:
    with sqlite3.connect(home / "taskyard.db") as connection:
        return connection.execute("SELECT value, key_id FROM secrets WHERE name = ?", (secret,)).fetchone()


def test_rotate_key_keeps_values_and_replaces_the_key_file(vs):
    secret, value = name("ROTATED"), fresh()
    taskyard.vault.create_or_update_secret(secret, value, client=vs.client)
    path = vs.home / KEY_FILE
    old_key = path.read_text().strip()
    with pytest.raises(Forbidden):
        user(vs, "bob").rotate_vault_key()
    rotation = vs.client.rotate_vault_key()
    new_key = path.read_text().strip()
    assert new_key != old_key and rotation.key_id == key_id(new_key) and rotation.resealed >= 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token, sealed_by = _row(vs.home, secret)
    assert sealed_by == key_id(new_key)
    with pytest.raises(InvalidToken):
        Fernet(old_key).decrypt(token)
    assert taskyard.vault.get_secret(secret, client=vs.client)[0] == value


def test_a_key_from_taskyard_vault_key(tmp_path):
    home, old, new = tmp_path / "home", Fernet.generate_key().decode(), Fernet.generate_key().decode()
    secret, value = name("ENV_KEY"), fresh()
    server = Server(home, TASKYARD_VAULT_KEY=old).start()
    try:
        taskyard.vault.create_or_update_secret(secret, value, client=server.client)
        with pytest.raises(Conflict, match="TASKYARD_VAULT_KEY"):
            server.client.rotate_vault_key()
    finally:
        server.stop()
    assert not (home / KEY_FILE).exists() and _row(home, secret)[1] == key_id(old)
    server = Server(home, TASKYARD_VAULT_KEY=f"{new},{old}").start()  # the way to change it
    try:
        assert taskyard.vault.get_secret(secret, client=server.client)[0] == value
        assert _row(home, secret)[1] == key_id(new)  # sealed again under the new key at start
    finally:
        server.stop()
    with pytest.raises(ServerUnavailable, match=f"{key_id(new)} \\(1 secret\\)"):
        Server(home).start()  # without it: refused, not a vault of unreadable values
    with pytest.raises(ServerUnavailable, match="TASKYARD_VAULT_KEY: not a vault key"):
        Server(home, TASKYARD_VAULT_KEY="not-a-key").start()


# -- the command line -----------------------------------------------------------------------------------


def test_cli_set_list_delete_rotate(vs, monkeypatch):
    secret, value = name("CLI"), fresh()
    cli = CliRunner()
    with default_client_of(vs, monkeypatch):
        done = cli.invoke(app, ["secrets", "set", secret, "--from-stdin"], input=value + "\n")
        assert done.exit_code == 0 and f"secret {secret} set" in done.stdout, done.output
        assert taskyard.vault.get_secret(secret, client=vs.client)[0] == value
        prompted = cli.invoke(app, ["secrets", "set", secret], input="typed-value\ntyped-value\n")
        assert prompted.exit_code == 0 and "typed-value" not in prompted.output, prompted.output
        assert taskyard.vault.get_secret(secret, client=vs.client)[0] == "typed-value"
        listed = cli.invoke(app, ["secrets", "list"])
        assert secret in listed.stdout and "personal" in listed.stdout and "typed-value" not in listed.stdout
        rotated = cli.invoke(app, ["secrets", "rotate-key"])
        assert rotated.exit_code == 0 and "vault key rotated" in rotated.stdout, rotated.output
        deleted = cli.invoke(app, ["secrets", "delete", secret])
        assert deleted.exit_code == 0 and secret not in cli.invoke(app, ["secrets", "list"]).stdout
        helped = cli.invoke(app, ["secrets", "--help"])
        assert all(command in helped.stdout for command in ("set", "list", "delete", "rotate-key"))
