"""Client-side packing of a task folder: excludes, determinism and the upload size limit."""

from __future__ import annotations

import os
import tarfile
import tempfile
from pathlib import Path

import pytest

from taskyard import bundle
from taskyard.agent import archive
from taskyard.errors import InvalidInput, TooLarge

MB = 1024 * 1024


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private temporary directory for bundles, to see what ``pack`` leaves behind."""
    path = tmp_path / "scratch"
    path.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(path))
    return path


def write(root: Path, rel: str, data: bytes | str = "x") -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def names(b: bundle.Bundle) -> list[str]:
    with tarfile.open(b.path) as tar:
        return tar.getnames()


def hello(tmp_path: Path) -> Path:
    root = tmp_path / "hello"
    write(root, "main.py", "print('hello')\n")
    write(root, "requirements.txt", "")
    return root


def test_pack_hello_world(tmp_path: Path) -> None:
    with bundle.pack(hello(tmp_path)) as b:
        assert names(b) == ["main.py", "requirements.txt"]
        assert b.file_count == 2
        assert b.size == b.path.stat().st_size
        assert len(b.sha256) == 64
    assert not b.path.exists()


def test_pack_is_deterministic(tmp_path: Path) -> None:
    root = hello(tmp_path)
    write(root, "data/blob.bin", os.urandom(4096))
    with bundle.pack(root) as first, bundle.pack(root) as second:
        assert first.path != second.path
        assert first.sha256 == second.sha256
        assert first.path.read_bytes() == second.path.read_bytes()


def test_default_excludes_at_any_depth(tmp_path: Path) -> None:
    root = hello(tmp_path)
    for rel in [
        ".git/HEAD",
        ".git/objects/ab/cdef",
        "node_modules/pkg/index.js",
        "__pycache__/x.pyc",
        "pkg/__pycache__/y.cpython-311.pyc",
        "pkg/mod.pyc",
        "pkg/.DS_Store",
        "nested/deep/.git/config",
        "nested/deep/node_modules/a.js",
        ".venv/bin/python",
        "venv/lib/site.py",
        ".ipynb_checkpoints/nb.ipynb",
        ".mypy_cache/x",
        ".pytest_cache/x",
        ".ruff_cache/x",
    ]:
        write(root, rel)
    kept = ["pkg/mod.py", "venv.txt", "node_modules.md", "nested/deep/keep.txt", "notes/.gitkeep"]
    for rel in kept:
        write(root, rel)
    with bundle.pack(root) as b:
        assert sorted(names(b)) == sorted(["main.py", "requirements.txt", *kept])
        assert b.file_count == 7


def test_taskyardignore_and_extra_excludes(tmp_path: Path) -> None:
    root = hello(tmp_path)
    write(root, ".taskyardignore", "# big things\n\ndata/\n*.csv\n  logs/debug.log  \n!main.py\n")
    for rel in ["data/raw.bin", "sub/data/x", "a.csv", "sub/b.csv", "logs/debug.log", "logs/keep.log"]:
        write(root, rel)
    write(root, "scratch.tmp")
    with bundle.pack(root, extra_excludes=["*.tmp"]) as b:
        assert sorted(names(b)) == [".taskyardignore", "logs/keep.log", "main.py", "requirements.txt"]


def test_matcher_rules() -> None:
    excluded = bundle.make_matcher(["build/", "/top.txt", "*.log", "docs/*.md"])
    assert excluded("build/") and excluded("a/b/build/")
    assert not excluded("build")  # a file called build is not a directory
    assert excluded("top.txt") and not excluded("sub/top.txt")
    assert excluded("x.log") and excluded("a/b/x.log")
    assert excluded("docs/readme.md") and not excluded("readme.md")


def test_outside_symlinks_are_left_out(tmp_path: Path) -> None:
    root = hello(tmp_path)
    write(tmp_path, "secret.txt", "secret")
    (root / "secret").symlink_to(tmp_path / "secret.txt")
    (root / "passwd").symlink_to("/etc/passwd")
    with bundle.pack(root) as b:
        assert names(b) == ["main.py", "requirements.txt"]


def test_round_trip_through_safe_extract(tmp_path: Path) -> None:
    root = hello(tmp_path)
    blob = bytes(range(256)) * 100
    write(root, "pkg/sub/blob.bin", blob)
    write(root, ".git/HEAD")
    dest = tmp_path / "dest"
    with bundle.pack(root) as b:
        extracted = archive.safe_extract(b.path, dest)
    assert extracted == ["main.py", "pkg/sub/blob.bin", "requirements.txt"]
    assert (dest / "pkg" / "sub" / "blob.bin").read_bytes() == blob
    assert not (dest / ".git").exists()


def test_too_large_after_packing(tmp_path: Path, scratch: Path) -> None:
    root = hello(tmp_path)
    for i, size in enumerate([700_000, 600_000, 500_000, 400_000, 300_000, 200_000]):
        write(root, f"data/part{i}.bin", os.urandom(size))  # incompressible, under 4x the limit
    with pytest.raises(TooLarge) as info:
        bundle.pack(root, max_bytes=1 * MB)
    message = str(info.value)
    assert info.value.field == "files_path"
    assert "the limit is 1 MB, the server's" in message
    assert "packed size is over 1.0 MB" in message
    assert "data/part0.bin  683.6 KB" in message
    assert "data/part4.bin" in message and "data/part5.bin" not in message
    assert f"add patterns to a .taskyardignore file in {root}" in message
    assert "point files_path at a smaller folder, or raise TASKYARD_MAX_UPLOAD_MB on the server" in message
    assert "start it with TASKYARD_MAX_UPLOAD_MB=3 in its environment" in message  # holds its 2.6 MB
    assert list(scratch.iterdir()) == []  # the partial bundle is gone


def test_too_large_is_refused_before_packing(tmp_path: Path, scratch: Path) -> None:
    root = hello(tmp_path)
    with open(root / "huge.bin", "wb") as fh:
        fh.truncate(5 * MB)  # sparse: cheap to make, 5 MB to pack
    with pytest.raises(TooLarge, match=r"files add up to 5\.0 MB.*not packed") as info:
        bundle.pack(root, max_bytes=1 * MB)
    assert "huge.bin  5.0 MB" in str(info.value)
    assert list(scratch.iterdir()) == []  # no bundle was even started


def test_limit_defaults_to_the_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = hello(tmp_path)
    with open(root / "huge.bin", "wb") as fh:
        fh.truncate(3 * MB)
    monkeypatch.setenv("TASKYARD_MAX_UPLOAD_MB", "0.5")
    with pytest.raises(TooLarge, match=r"the limit is 0\.5 MB"):
        bundle.pack(root)
    monkeypatch.setenv("TASKYARD_MAX_UPLOAD_MB", "10")
    with bundle.pack(root) as b:
        assert b.file_count == 3


def test_missing_folder_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="does not exist") as info:
        bundle.pack(tmp_path / "nope")
    assert info.value.field == "files_path"
    write(tmp_path, "file.py")
    with pytest.raises(InvalidInput, match="is not a directory"):
        bundle.pack(tmp_path / "file.py")


def test_a_control_planes_home_inside_the_folder_is_never_packed(tmp_path: Path, monkeypatch) -> None:
    root = hello(tmp_path)
    monkeypatch.setenv("TASKYARD_HOME", str(root / "state"))
    write(root, "state/blobs/old.tar.gz", b"an earlier bundle")  # TASKYARD_HOME itself, whatever it holds
    write(root, "other-server/taskyard.db", b"a database")
    write(root, "other-server/notes.txt", "next to it")
    write(root, "embedded/token", "ty_" + "a" * 43)
    write(root, "keys/vault.key", b"a key")
    write(root, "data/token", "not a taskyard token")
    with bundle.pack(root) as packed:
        assert names(packed) == ["data/token", "main.py", "requirements.txt"]


def test_a_folder_that_is_a_control_planes_home_is_refused(tmp_path: Path) -> None:
    root = hello(tmp_path)
    write(root, "taskyard.db", b"a database")
    with pytest.raises(InvalidInput, match="holds a taskyard server's database or token"):
        bundle.pack(root)
