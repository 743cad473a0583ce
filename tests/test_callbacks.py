"""Task callbacks end to end: a real control plane, real workers, a real receiver on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

import taskyard
from taskyard import TaskStatus
from taskyard.callbacks import DELIVERY_HEADER, SIGNATURE_HEADER, verify
from taskyard.errors import InvalidInput
from taskyard.server.callbacks.outbox import backoff
from taskyard.server.config import CallbackSettings

from receiver import Receiver, fast_server, free_port
from support import Server, cwd_of, default_client_of, wait_for, write

S = TaskStatus
TOKEN = "cb-Test-Token_7f3a9c"


@pytest.fixture(scope="module")
def cb(tmp_path_factory):
    server = fast_server(tmp_path_factory.mktemp("callbacks") / "home").start()
    yield server
    server.stop()


def submit(server: Server, folder: Path, code: str, url: str, name: str = "task.py", **options) -> taskyard.Task:
    write(folder, name, code)
    return taskyard.submit(name, files_path=folder, client=server.client, callback_url=url, **options)


def deliveries(server: Server, task: taskyard.Task):
    return server.client.callbacks(task.id).deliveries


def settled(server: Server, task: taskyard.Task):
    """The task's deliveries once none is pending any more."""
    return wait_for(lambda: [d for d in deliveries(server, task) if d.state != "pending"] or None, timeout=30)


def test_success_and_failure_call_back_with_token_and_signature(cb, tmp_path):
    secret = cb.client.signing_secret()
    with Receiver() as receiver:
        ok = submit(cb, tmp_path / "ok", "print('all good')\n", receiver.url, callback_url_token=TOKEN)
        bad = submit(cb, tmp_path / "bad", "print('broken'); raise SystemExit(3)\n", receiver.url)
        assert ok.wait(timeout=60) is S.SUCCESS and bad.wait(timeout=60) is S.FAILED
        wait_for(lambda: len(receiver.requests) == 2, timeout=30)
    by_task = {r.json["task_id"]: r for r in receiver.requests}
    good, failed = by_task[ok.id], by_task[bad.id]
    assert good.json == {
        "task_name": "task.py",
        "task_id": ok.id,
        "success": True,
        "logs": "all good\n",
        "status": "Success",
    }
    assert good.headers["authorization"] == f"Bearer {TOKEN}"
    assert verify(secret, good.body, good.headers[SIGNATURE_HEADER.lower()])
    assert not verify(secret, good.body + b" ", good.headers[SIGNATURE_HEADER.lower()])
    assert failed.json["success"] is False and failed.json["status"] == "Failed"
    assert failed.json["logs"] == "broken\n"
    assert "authorization" not in failed.headers  # no token given, none sent
    assert verify(secret, failed.body, failed.headers[SIGNATURE_HEADER.lower()])
    [record] = settled(cb, ok)
    assert record.state == "delivered" and record.id == good.headers[DELIVERY_HEADER.lower()]
    assert [a.status_code for a in record.attempts] == [200]


def test_the_token_is_never_stored_in_clear(cb, tmp_path):
    token = "cb-NeverInClear-" + str(time.time_ns())
    with Receiver() as receiver:
        task = submit(cb, tmp_path, "print('x')\n", receiver.url, callback_url_token=token)
        task.wait(timeout=60)
        wait_for(lambda: receiver.requests, timeout=30)
    assert receiver.requests[0].headers["authorization"] == f"Bearer {token}"
    stored = b"".join(path.read_bytes() for path in cb.home.glob("*.db*"))
    assert stored and token.encode() not in stored


def test_a_receiver_down_at_first_gets_it_when_it_comes_up(cb, tmp_path):
    receiver = Receiver(port=free_port())
    task = submit(cb, tmp_path, "print('late')\n", receiver.url)
    assert task.wait(timeout=60) is S.SUCCESS
    wait_for(lambda: len(deliveries(cb, task)[0].attempts) >= 2, timeout=30)
    with receiver:
        [record] = settled(cb, task)
    assert record.state == "delivered"
    codes = [a.status_code for a in record.attempts]
    assert codes[-1] == 200 and set(codes[:-1]) == {None}
    assert all(a.error for a in record.attempts[:-1])
    assert len(receiver.requests) == 1 and receiver.requests[0].json["logs"] == "late\n"


def test_5xx_and_429_are_retried_and_other_4xx_are_not(cb, tmp_path):
    with Receiver(answers=(503, 429)) as receiver:
        task = submit(cb, tmp_path / "retried", "print(1)\n", receiver.url)
        [record] = settled(cb, task)
        assert record.state == "delivered"
        assert [a.status_code for a in record.attempts] == [503, 429, 200]
    with Receiver(answers=(404,)) as receiver:
        task = submit(cb, tmp_path / "refused", "print(1)\n", receiver.url)
        [record] = settled(cb, task)
        assert record.state == "failed" and [a.status_code for a in record.attempts] == [404]
        assert "HTTP 404" in record.attempts[0].error
    with Receiver(answers=(500, 500, 500, 500)) as receiver:
        task = submit(cb, tmp_path / "given-up", "print(1)\n", receiver.url)
        [record] = settled(cb, task)
        assert record.state == "failed" and len(record.attempts) == 4  # the configured attempts


def test_killed_and_timed_out_tasks_call_back(cb, tmp_path):
    with Receiver() as receiver:
        killed = submit(cb, tmp_path / "k", "import time\nprint('up', flush=True)\ntime.sleep(600)\n", receiver.url)
        timed = submit(cb, tmp_path / "t", "import time\ntime.sleep(600)\n", receiver.url, time_to_live=1)
        wait_for(lambda: "up" in killed.logs(), timeout=30)
        assert killed.kill(timeout=30) is S.KILLED
        assert timed.wait(timeout=60) is S.TASK_TIMED_OUT
        wait_for(lambda: len(receiver.requests) == 2, timeout=30)
    by_task = {r.json["task_id"]: r.json for r in receiver.requests}
    assert by_task[killed.id]["status"] == "Killed" and by_task[killed.id]["success"] is False
    assert by_task[timed.id]["status"] == "Task Timed Out" and by_task[timed.id]["success"] is False


def test_resend_sends_a_new_delivery(cb, tmp_path):
    with Receiver() as receiver:
        task = submit(cb, tmp_path, "print('again')\n", receiver.url)
        task.wait(timeout=60)
        settled(cb, task)
        again = cb.client.resend_callback(task.id)
        wait_for(lambda: len(receiver.requests) == 2, timeout=30)
    first, second = (r.headers[DELIVERY_HEADER.lower()] for r in receiver.requests)
    assert second == again.id != first
    assert receiver.requests[0].body == receiver.requests[1].body


def test_callback_urls_must_be_http_and_an_allowed_host(cb, tmp_path):
    write(tmp_path, "t.py", "print(1)\n")
    with pytest.raises(InvalidInput, match="http:// or https://"):
        submit(cb, tmp_path, "print(1)\n", "ftp://127.0.0.1/hook")
    body = {"file_name": "t.py", "bundle_sha256": "0" * 64, "bundle_size": 1, "callback_url": "file:///etc/passwd"}
    with pytest.raises(InvalidInput, match="callback_url: .*http:// or https://"):
        cb.client.request("POST", "/tasks", json=body)
    with pytest.raises(InvalidInput, match="allowed hosts: 127.0.0.1") as refused:
        submit(cb, tmp_path, "print(1)\n", "http://example.com/hook")
    assert refused.value.field == "callback_url"


def test_a_control_plane_killed_before_delivery_delivers_after_restart(tmp_path, own_db):
    server = fast_server(tmp_path / "home", own_db).start()
    receiver = Receiver().start()
    receiver.hold.clear()  # the first request waits: the control plane dies while it is out
    try:
        task = submit(server, tmp_path, "print('survives')\n", receiver.url)
        wait_for(lambda: receiver.requests, timeout=60)
        server.kill9()
        receiver.hold.set()
        server.start()
        task.client = server.client
        [record] = settled(server, task)
        assert record.state == "delivered" and [a.status_code for a in record.attempts] == [200]
        assert len(deliveries(server, task)) == 1  # one terminal callback, sent again after the restart
        ids = {r.headers[DELIVERY_HEADER.lower()] for r in receiver.requests}
        assert ids == {record.id}  # a receiver drops the repeat by its delivery id
        assert receiver.requests[-1].json["success"] is True
        assert receiver.requests[-1].json["logs"] == "survives\n"
    finally:
        receiver.stop()
        server.stop()


def test_backoff_doubles_with_jitter_up_to_the_cap():
    settings = CallbackSettings()
    assert [round(backoff(settings, n) / (5 * 2 ** (n - 1)), 2) <= 1.25 for n in range(1, 5)] == [True] * 4
    assert all(backoff(settings, 9) <= settings.max_delay for _ in range(50))
    assert min(backoff(settings, 1) for _ in range(50)) >= 5 * 0.75
    assert backoff(settings, 1, retry_after=60) == 60
    total = sum(min(settings.max_delay, settings.first_delay * 2 ** (n - 1)) for n in range(1, settings.attempts))
    assert 8 * 60 <= total <= 12 * 60  # the ten default attempts spread over about ten minutes


def test_the_cli_runs_with_a_callback_shows_its_attempts_and_resends(cb, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from taskyard.cli import app

    write(tmp_path, "cli.py", "print('from the cli')\n")
    monkeypatch.setenv("CI_CALLBACK_TOKEN", TOKEN)
    with Receiver() as receiver, default_client_of(cb, monkeypatch):
        runner = CliRunner()
        args = ["run", "cli.py", "--files", str(tmp_path), "--callback", receiver.url]
        ran = runner.invoke(app, [*args, "--callback-token-env", "CI_CALLBACK_TOKEN"])
        assert ran.exit_code == 0, ran.output
        wait_for(lambda: receiver.requests, timeout=30)
        task_id = receiver.requests[0].json["task_id"]
        settled_ = wait_for(lambda: cb.client.callbacks(task_id).deliveries[0].state == "delivered", timeout=30)
        assert settled_
        shown = runner.invoke(app, ["tasks", "show", task_id])
        assert f"Callback: {receiver.url}" in shown.stdout and "delivered" in shown.stdout
        resent = runner.invoke(app, ["tasks", "callback", task_id, "--resend"])
        assert resent.exit_code == 0 and "queued again as delivery" in resent.stdout
        wait_for(lambda: len(receiver.requests) == 2, timeout=30)
        missing = runner.invoke(app, [*args, "--callback-token-env", "NO_SUCH_VARIABLE_SET"])
        assert missing.exit_code == 2 and "NO_SUCH_VARIABLE_SET is not set" in missing.output
        secret = runner.invoke(app, ["tasks", "signing-secret"]).stdout.strip()
    assert receiver.requests[0].headers["authorization"] == f"Bearer {TOKEN}"
    assert verify(secret, receiver.requests[1].body, receiver.requests[1].headers[SIGNATURE_HEADER.lower()])


def test_the_readme_receiver_verifies_a_real_callback(cb, tmp_path):
    import re
    import subprocess
    import sys

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    [code] = [block for block in re.findall(r"```python\n(.*?)```", readme, re.S) if "class Hook" in block]
    port = free_port()
    script = write(tmp_path, "receiver.py", code.replace("8000", str(port)))
    env = {**os.environ, "TASKYARD_SIGNING_SECRET": cb.client.signing_secret()}
    receiver = subprocess.Popen([sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _listening(port), timeout=20)
        url = f"http://127.0.0.1:{port}/hook"
        signed = submit(cb, tmp_path / "a", "print(1)\n", url, callback_url_token="ci-secret")
        wrong = submit(cb, tmp_path / "b", "raise SystemExit(1)\n", url, callback_url_token="not-the-token")
        assert signed.wait(timeout=60) is S.SUCCESS and wrong.wait(timeout=60) is S.FAILED
        [accepted] = settled(cb, signed)
        [refused] = settled(cb, wrong)
        assert accepted.state == "delivered" and refused.state == "failed"  # 401: not retried
        assert [a.status_code for a in refused.attempts] == [401]
    finally:
        receiver.terminate()
        out, _ = receiver.communicate(timeout=10)
    assert out == f"{signed.id} Success ok\n"


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


def test_a_vault_key_rotation_keeps_the_token_and_the_signing_secret(tmp_path):
    server = fast_server(tmp_path / "home").start()
    try:
        secret = server.client.signing_secret()
        with Receiver() as receiver:
            task = submit(server, tmp_path, "print(1)\n", receiver.url, callback_url_token=TOKEN)
            task.wait(timeout=60)
            settled(server, task)
            rotation = server.client.rotate_vault_key()
            assert rotation.resealed >= 2  # the callback token and the signing secret, sealed again
            server.client.resend_callback(task.id)
            wait_for(lambda: len(receiver.requests) == 2, timeout=30)
        assert server.client.signing_secret() == secret
        again = receiver.requests[1]
        assert again.headers["authorization"] == f"Bearer {TOKEN}"
        assert verify(secret, again.body, again.headers[SIGNATURE_HEADER.lower()])
    finally:
        server.stop()


def test_a_lost_worker_retried_calls_back_once_for_its_final_ending(cb, tmp_path, readable_dir):
    marker = readable_dir / "first-run-done"
    code = (
        "import pathlib, time\n"
        f"if pathlib.Path({str(marker)!r}).exists():\n    print('second run'); raise SystemExit(0)\n"
        "print('up', flush=True); time.sleep(600)\n"
    )
    with Receiver() as receiver:
        task = submit(cb, tmp_path, code, receiver.url, max_retries=1)
        wait_for(lambda: "up" in task.logs(), timeout=30)
        marker.touch()
        os.kill(_agent_pid(cb, task.worker_name), signal.SIGKILL)
        assert task.wait(timeout=60) is S.SUCCESS
        [record] = settled(cb, task)
        time.sleep(1)  # a callback of the lost run would have come by now
    assert record.task_status is S.SUCCESS
    assert [r.json["status"] for r in receiver.requests] == ["Success"]


def _agent_pid(server: Server, worker_name: str) -> int:
    folder = str(server.home / "workers" / worker_name)
    [pid] = [int(pid) for pid in os.listdir("/proc") if pid.isdigit() and cwd_of(int(pid)) == folder]
    return pid


def test_the_callbacks_table_is_read_and_checked_at_start(tmp_path):
    from taskyard.errors import ConfigError
    from taskyard.server.config import load_config

    good = write(tmp_path, "good.toml", '[callbacks]\nattempts = 3\nallowed_hosts = ["ci.example.com"]\n')
    config = load_config(good, data_dir=tmp_path)
    assert config.callbacks.attempts == 3 and config.callbacks.allowed_hosts == ("ci.example.com",)
    bad = write(tmp_path, "bad.toml", "[callbacks]\nretries = 3\n")
    with pytest.raises(ConfigError, match=r"bad.toml: callbacks.retries: unknown key; the keys are: attempts, "):
        load_config(bad, data_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"callbacks.attempts: Input should be greater than or equal to 1"):
        load_config(write(tmp_path, "zero.toml", "[callbacks]\nattempts = 0\n"), data_dir=tmp_path)
