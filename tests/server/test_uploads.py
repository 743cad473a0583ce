"""Uploads are checked when they arrive: the size measured, a whole tar.gz, bounded when unpacked; outputs bounded."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile

import pytest

import taskyard
from taskyard.errors import InvalidInput, TooLarge
from taskyard.models import TaskSpec
from taskyard.status import TaskStatus

from support import Server, write


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A server taking uploads of 1 MB (so 10 MB unpacked) and outputs of 1 MB."""
    home = tmp_path_factory.mktemp("small-uploads")
    server = Server(home, TASKYARD_MAX_UPLOAD_MB="1", TASKYARD_MAX_OUTPUTS_MB="1").start()
    yield server
    server.stop()


def _tar_gz(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _send(server: Server, data: bytes, *, declared: int | None = None):
    """Submit ``main.py`` with ``data`` as its folder's upload; return the task's id and the upload's answer."""
    spec = TaskSpec(
        file_name="main.py", bundle_sha256=hashlib.sha256(data).hexdigest(), bundle_size=declared or len(data)
    )
    task = server.client.submit(spec)
    return task.id, server.client._http.put(f"/tasks/{task.id}/bundle", content=data)


def test_a_bomb_is_refused_at_upload_naming_the_limit(small):
    bomb = _tar_gz({"main.py": b"print(1)\n", "zeros.bin": bytes(40 << 20)})
    assert len(bomb) < 1 << 20
    _, answer = _send(small, bomb)
    assert answer.status_code == 413
    assert "unpacks to more than the limit of 10 MB (TASKYARD_MAX_UNPACK_MB)" in answer.json()["error"]["message"]


@pytest.mark.parametrize("data", [b"not an archive at all", _tar_gz({"main.py": b"x" * 50_000})[:-200]])
def test_a_non_archive_or_truncated_upload_is_refused_at_upload(small, data):
    task_id, answer = _send(small, data)
    assert answer.status_code == 422
    assert "not a complete tar.gz archive" in answer.json()["error"]["message"]
    assert small.client.task(task_id).status is TaskStatus.WAITING_FOR_INPUT  # a good upload may follow


def test_the_measured_size_is_trusted_not_the_declared_one(small):
    data = _tar_gz({"main.py": b"print(1)\n", "pad.bin": bytes(100_000)})
    _, answer = _send(small, data, declared=1)
    assert answer.status_code == 422
    assert answer.json()["error"]["field"] == "bundle_size"


def test_a_good_upload_runs(small):
    data = _tar_gz({"main.py": b"print('fine')\n"})
    task_id, answer = _send(small, data)
    assert answer.status_code == 200, answer.text
    task = taskyard.Task(task_id, client=small.client)
    assert task.wait(timeout=60) is TaskStatus.SUCCESS and task.logs() == "fine\n"


def test_outputs_over_the_limit_keep_the_exit_status_and_say_what_was_kept(small, tmp_path):
    code = (
        "import os, pathlib\nout = pathlib.Path(os.environ['TASKYARD_OUTPUT_DIR'])\n"
        "(out / 'big.bin').write_bytes(os.urandom(3 << 20))\n(out / 'small.txt').write_text('kept')\n"
    )
    write(tmp_path / "src", "make.py", code)
    task = taskyard.submit("make.py", files_path=tmp_path / "src", client=small.client)
    assert task.wait(timeout=60) is TaskStatus.SUCCESS
    info = small.client.task(task.id)
    assert "outputs were over the limit of 1 MB (TASKYARD_MAX_OUTPUTS_MB)" in info.reason
    assert "kept: small.txt; left out: big.bin" in info.reason
    got = task.download_outputs(output_dir=tmp_path / "got")
    assert (got / "small.txt").read_text() == "kept" and not (got / "big.bin").exists()


def test_the_sdk_reports_a_refused_upload(small, tmp_path):
    write(tmp_path / "src", "main.py", "print(1)\n")
    (tmp_path / "src" / "zeros.bin").write_bytes(bytes(20 << 20))
    with pytest.raises((TooLarge, InvalidInput)):
        taskyard.submit("main.py", files_path=tmp_path / "src", client=small.client)
