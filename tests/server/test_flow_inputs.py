"""A flow task's files with its upstream tasks' outputs under inputs/, as the agent unpacks them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from taskyard.agent.archive import pack_dir, safe_extract
from taskyard.errors import TooLarge
from taskyard.server.flows.inputs import compose

from support import write


def _archive(folder: Path, path: Path) -> Path:
    buffer = io.BytesIO()
    pack_dir(folder, buffer)
    path.write_bytes(buffer.getvalue())
    return path


def test_outputs_go_under_inputs_and_the_folder_own_inputs_give_way(tmp_path):
    write(tmp_path / "base", "task.py", "print('hi')\n")
    write(tmp_path / "base", "inputs/a/stale.txt", "old")
    write(tmp_path / "base", "inputs/keep/mine.txt", "mine")
    write(tmp_path / "a_out", "table.csv", "id\n1\n")
    write(tmp_path / "a_out", "sub/deep.txt", "deep")
    base = _archive(tmp_path / "base", tmp_path / "base.tar.gz")
    outputs = _archive(tmp_path / "a_out", tmp_path / "a.tar.gz")
    data, sha = compose(base, {"a": outputs, "b": None}, max_bytes=10**6)
    names = safe_extract(io.BytesIO(data), tmp_path / "task")
    task = tmp_path / "task"
    assert (task / "task.py").read_text() == "print('hi')\n"
    assert (task / "inputs" / "a" / "table.csv").read_text() == "id\n1\n"
    assert (task / "inputs" / "a" / "sub" / "deep.txt").read_text() == "deep"
    assert not (task / "inputs" / "a" / "stale.txt").exists()
    assert (task / "inputs" / "keep" / "mine.txt").read_text() == "mine"
    assert (task / "inputs" / "b").is_dir() and not any((task / "inputs" / "b").iterdir())
    assert len(names) == len(set(names))
    assert compose(base, {"b": None, "a": outputs}, max_bytes=10**6) == (data, sha)  # the same bytes again


def test_too_large_is_refused(tmp_path):
    write(tmp_path / "base", "task.py", "x" * 10_000)
    base = _archive(tmp_path / "base", tmp_path / "base.tar.gz")
    with pytest.raises(TooLarge, match="inputs pack to"):
        compose(base, {}, max_bytes=10)
