"""What ``taskyard run`` tells the person at the terminal: the server's upload limit and how to raise it, a
progress bar for a large upload, that it started the embedded server, and the task's live status."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys

from rich.console import Console
from typer.testing import CliRunner

from taskyard import upload_progress
from taskyard.cli import app

from support import EXAMPLES, Server, default_client_of, invoke, write


def test_the_upload_limit_is_the_servers_and_the_message_says_how_to_raise_it(tmp_path, monkeypatch):
    server = Server(tmp_path / "home", TASKYARD_MAX_UPLOAD_MB="0.1").start()
    try:
        write(tmp_path / "big", "big.py", "print('big')\n")
        (tmp_path / "big" / "data.bin").write_bytes(os.urandom(300_000))
        monkeypatch.delenv("TASKYARD_MAX_UPLOAD_MB", raising=False)  # this side's own setting plays no part
        with default_client_of(server, monkeypatch):
            result = CliRunner().invoke(app, ["run", "big.py", "--files", str(tmp_path / "big")])
            assert server.client.upload_limit() == int(0.1 * 1024 * 1024)
        assert result.exit_code == 2, result.output
        err = result.stderr
        assert "the limit is 0.1 MB, the server's (TASKYARD_MAX_UPLOAD_MB where it runs)" in err
        assert "start it with TASKYARD_MAX_UPLOAD_MB=1 in its environment" in err and "taskyard server stop" in err
        spec = {"file_name": "a.py", "bundle_sha256": "0" * 64, "bundle_size": 2_000_000}
        refused = server.client._http.post("/tasks", json=spec).json()["error"]["message"]
        assert "over this server's upload limit of 0.1 MB" in refused and "TASKYARD_MAX_UPLOAD_MB=3" in refused
    finally:
        server.stop()


def test_a_large_upload_moves_a_progress_bar_and_a_small_one_shows_none():
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100)
    data = io.BytesIO(b"x" * (upload_progress.SHOWN_FROM + 1))
    with upload_progress.bar(upload_progress.SHOWN_FROM + 1, console) as advance:
        sent = b"".join(upload_progress.pieces(data, advance))
    assert len(sent) == upload_progress.SHOWN_FROM + 1
    assert "uploading the task folder" in out.getvalue()
    quiet = io.StringIO()
    with upload_progress.bar(1000, Console(file=quiet, force_terminal=True)) as advance:
        advance(1000)
    assert quiet.getvalue() == ""


def test_run_on_a_terminal_shows_the_upload_bar_and_the_live_status(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("FORCE_COLOR", "1")  # Rich takes both outputs for a terminal
    write(tmp_path, "slow.py", "import time\nprint('a', flush=True)\ntime.sleep(2)\nprint('b')\n")
    (tmp_path / "data.bin").write_bytes(os.urandom(upload_progress.SHOWN_FROM + 100_000))
    result = invoke(cli, "run", "slow.py", "--files", tmp_path)
    assert result.exit_code == 0, result.output
    assert result.stdout == "a\nb\n"
    assert "uploading the task folder" in result.stderr
    shown = re.findall(r"In Progress  (\d+\.\d)s  task ", result.stderr)
    assert len(shown) >= 2 and float(shown[-1]) >= 1.0  # redrawn while it ran, after its first line
    assert ": Success" in result.stderr


def test_the_first_run_says_it_started_the_embedded_server_and_how_to_stop_it(tmp_path):
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKYARD_")}
    env.update(TASKYARD_HOME=str(home), PYTHONPATH=os.environ.get("PYTHONPATH", ""))
    command = [sys.executable, "-m", "taskyard", "run", "task_1.py", "--files", str(EXAMPLES)]
    try:
        first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    finally:
        Server(home).stop()
    assert first.returncode == 0, first.stderr
    assert "started the embedded taskyard server at http://127.0.0.1:" in first.stderr
    assert "Stop it with: taskyard server stop" in first.stderr
    assert second.returncode == 0 and "started the embedded" not in second.stderr
