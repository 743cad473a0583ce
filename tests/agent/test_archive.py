"""Deterministic packing and safe extraction in the agent's stdlib-only archive module."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from taskyard.agent import archive

AGENT_DIR = Path(__file__).resolve().parents[2] / "src" / "taskyard" / "agent"
BINARY = bytes(range(256)) * 64


def make_tree(root: Path) -> Path:
    (root / "sub" / "deeper").mkdir(parents=True)
    (root / "main.py").write_text("print('hello')\n")
    (root / "run.sh").write_text("#!/bin/sh\necho hi\n")
    (root / "run.sh").chmod(0o755)
    (root / "sub" / "data.bin").write_bytes(BINARY)
    (root / "sub" / "deeper" / "notes.txt").write_text("deep\n")
    return root


def tar_bytes(*members: tuple[tarfile.TarInfo, bytes | None], compress: bool = True) -> io.BytesIO:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz" if compress else "w") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    buf.seek(0)
    return buf


def reg(name: str, data: bytes = b"x") -> tuple[tarfile.TarInfo, bytes]:
    return tarfile.TarInfo(name), data


def link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def special(name: str, kind: bytes) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type = kind
    return info, None


def packed(root: Path) -> bytes:
    out = io.BytesIO()
    archive.pack_dir(root, out)
    return out.getvalue()


# ---------------------------------------------------------------------------- packing


def test_pack_is_deterministic_across_runs_and_locations(tmp_path: Path) -> None:
    first = make_tree(tmp_path / "a")
    again = packed(first)
    assert packed(first) == again

    copy = tmp_path / "b"
    os.rename(first, copy)  # same contents and mtimes, another place
    assert packed(copy) == again


def test_pack_headers_are_normalised(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "f")
    data = packed(root)
    assert data[4:8] == b"\0\0\0\0"  # gzip header mtime
    assert data[3] & 0x08 == 0  # no file name in the gzip header
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["main.py", "run.sh", "sub/data.bin", "sub/deeper/notes.txt"]
    assert {(m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, "", "")}
    modes = {m.name: m.mode for m in members}
    assert modes["run.sh"] == 0o755 and modes["main.py"] == 0o644
    assert members[0].mtime == int((root / "main.py").stat().st_mtime)


def test_write_tar_returns_bytes_written_and_takes_directories(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "f")
    (root / "empty").mkdir()
    out = io.BytesIO()
    written = archive.write_tar(root, out, [Path("sub/deeper/notes.txt"), Path("empty"), root / "main.py"])
    assert written == len(out.getvalue())
    with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as tar:
        assert [(m.name, m.isdir()) for m in tar] == [
            ("empty", True),
            ("main.py", False),
            ("sub/deeper/notes.txt", False),
        ]


def test_pack_keeps_inside_symlinks_and_skips_outside_ones(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "f")
    (tmp_path / "secret.txt").write_text("secret")
    (root / "to_secret").symlink_to(tmp_path / "secret.txt")
    (root / "to_passwd").symlink_to("/etc/passwd")
    (root / "latest").symlink_to(root / "sub")  # absolute, but inside: stored relative
    (root / "sub" / "up").symlink_to("../main.py")
    (root / "loop").symlink_to("loop")
    with tarfile.open(fileobj=io.BytesIO(packed(root))) as tar:
        links = {m.name: m.linkname for m in tar if m.issym()}
    assert links == {"latest": "sub", "sub/up": "../main.py"}


def test_iter_files_prunes_excluded_directories(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "f")
    (root / "node_modules" / "pkg").mkdir(parents=True)
    (root / "node_modules" / "pkg" / "index.js").write_text("")
    seen: list[str] = []

    def exclude(rel: str) -> bool:
        seen.append(rel)
        return rel == "node_modules/" or rel.endswith(".txt")

    files = archive.iter_files(root, exclude)
    assert files == [Path("main.py"), Path("run.sh"), Path("sub/data.bin")]
    assert "node_modules/" in seen and "sub/deeper/" in seen
    assert not [rel for rel in seen if rel.startswith("node_modules/") and rel != "node_modules/"]


# ---------------------------------------------------------------------------- extraction


def test_round_trip(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "f")
    (root / "latest").symlink_to("sub")
    data = io.BytesIO(packed(root))
    dest = tmp_path / "out"
    names = archive.safe_extract(data, dest)
    assert names == ["latest", "main.py", "run.sh", "sub/data.bin", "sub/deeper/notes.txt"]
    assert (dest / "sub" / "data.bin").read_bytes() == BINARY
    assert (dest / "sub" / "deeper" / "notes.txt").read_text() == "deep\n"
    assert os.readlink(dest / "latest") == "sub"
    assert os.access(dest / "run.sh", os.X_OK)
    assert int((dest / "main.py").stat().st_mtime) == int((root / "main.py").stat().st_mtime)


def test_extract_from_path_plain_tar_and_unseekable_stream(tmp_path: Path) -> None:
    plain = tar_bytes(reg("a/b.txt", b"plain"), compress=False)
    assert archive.safe_extract(plain, tmp_path / "one") == ["a/b.txt"]

    file = tmp_path / "bundle.tar.gz"
    file.write_bytes(tar_bytes(reg("./c.txt", b"c")).getvalue())
    assert archive.safe_extract(file, tmp_path / "two") == ["c.txt"]

    class Stream(io.RawIOBase):
        def __init__(self, data: bytes) -> None:
            self._inner = io.BytesIO(data)

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
            chunk = self._inner.read(len(buffer))
            buffer[: len(chunk)] = chunk
            return len(chunk)

    stream = Stream(file.read_bytes())
    assert archive.safe_extract(stream, tmp_path / "three") == ["c.txt"]  # type: ignore[arg-type]
    assert (tmp_path / "three" / "c.txt").read_bytes() == b"c"


@pytest.mark.parametrize(
    ("member", "named"),
    [
        (reg("../evil"), "../evil"),
        (reg("sub/../../evil"), "sub/../../evil"),
        (link("passwd", "/etc/passwd"), "passwd"),
        (link("up", "../evil"), "up"),
        (link("hard", "../evil", tarfile.LNKTYPE), "hard"),
        (link("hard", "/etc/passwd", tarfile.LNKTYPE), "hard"),
        (special("fifo", tarfile.FIFOTYPE), "fifo"),
        (special("tty", tarfile.CHRTYPE), "tty"),
        (special("disk", tarfile.BLKTYPE), "disk"),
    ],
)
def test_refuses_unsafe_members_before_writing(tmp_path: Path, member, named: str) -> None:  # type: ignore[no-untyped-def]
    dest = tmp_path / "a" / "dest"
    with pytest.raises(ValueError, match=f"member '{named}'"):
        archive.safe_extract(tar_bytes(reg("first.txt"), member), dest)
    assert list(dest.iterdir()) == []
    assert not (tmp_path / "a" / "evil").exists()


def test_refuses_absolute_path(tmp_path: Path) -> None:
    target = tmp_path / "abs.txt"
    with pytest.raises(ValueError, match="absolute path"):
        archive.safe_extract(tar_bytes(reg(str(target))), tmp_path / "dest")
    with pytest.raises(ValueError, match="member '/abs'"):
        archive.safe_extract(tar_bytes(reg("/abs")), tmp_path / "dest")
    assert not target.exists()


def test_refuses_symlink_then_file_through_it(tmp_path: Path) -> None:
    pwned = f"pwned-{os.getpid()}-{tmp_path.name}"
    evil = tar_bytes(link("link", "/tmp"), reg(f"link/{pwned}"))
    with pytest.raises(ValueError, match="member 'link'"):
        archive.safe_extract(evil, tmp_path / "dest")
    assert not Path("/tmp", pwned).exists()

    outside = tmp_path / "outside"
    outside.mkdir()
    evil = tar_bytes(link("link", os.path.relpath(outside, tmp_path / "dest")), reg("link/pwned"))
    with pytest.raises(ValueError, match="member 'link'"):
        archive.safe_extract(evil, tmp_path / "dest")
    assert list(outside.iterdir()) == []


def test_refuses_files_below_a_symlink_member_even_inside(tmp_path: Path) -> None:
    evil = tar_bytes(reg("sub/a"), link("link", "sub"), reg("link/pwned"))
    with pytest.raises(ValueError, match="'link/pwned' lies below the symlink member 'link'"):
        archive.safe_extract(evil, tmp_path / "dest")


def test_refuses_escape_through_a_chain_of_symlink_members(tmp_path: Path) -> None:
    # 'd/..' looks like the root, but d points at the root, so it really is the parent.
    evil = tar_bytes(link("d", "."), link("e", "d/.."))
    with pytest.raises(ValueError, match="member 'e' links to 'd/..'"):
        archive.safe_extract(evil, tmp_path / "dest")


def test_refuses_escape_through_a_symlink_already_in_dest(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "escape").symlink_to(outside)
    with pytest.raises(ValueError, match="member 'escape/x' lands outside"):
        archive.safe_extract(tar_bytes(reg("escape/x")), dest)
    assert list(outside.iterdir()) == []


def test_refuses_duplicate_members(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="appears more than once"):
        archive.safe_extract(tar_bytes(reg("a"), reg("./a")), tmp_path / "dest")


# ---------------------------------------------------------------------------- isolation


def test_agent_archive_imports_only_the_stdlib() -> None:
    code = (
        "import sys\n"
        f"sys.path.insert(0, {str(AGENT_DIR)!r})\n"
        "before = set(sys.modules)\n"
        "import archive\n"
        "new = set(sys.modules) - before\n"
        "print(sorted(m for m in new if m.split('.')[0] not in sys.stdlib_module_names))\n"
    )
    result = subprocess.run([sys.executable, "-I", "-S", "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "['archive']"


def test_gzip_stream_is_valid(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "f")
    assert gzip.decompress(packed(root))[:7] == b"main.py"


def _bomb(path: Path, size: int) -> Path:
    """A small tar.gz holding one file of ``size`` zero bytes."""

    class Zeros(io.RawIOBase):
        def __init__(self, left: int) -> None:
            self.left = left

        def readable(self) -> bool:
            return True

        def readinto(self, buffer) -> int:
            n = min(len(buffer), self.left)
            buffer[:n] = bytes(n)
            self.left -= n
            return n

    with gzip.open(path, "wb") as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        info = tarfile.TarInfo("zeros.bin")
        info.size = size
        tar.addfile(info, io.BufferedReader(Zeros(size)))
    return path


def test_an_archive_over_the_unpack_limit_is_refused_before_anything_is_written(tmp_path):
    bomb = _bomb(tmp_path / "bomb.tar.gz", 64 << 20)
    assert bomb.stat().st_size < 1 << 20
    dest = tmp_path / "out"
    with pytest.raises(ValueError, match=r"unpack to more than the limit of 8 MB \(TASKYARD_MAX_UNPACK_MB\)"):
        archive.safe_extract(bomb, dest, max_bytes=8 << 20)
    assert list(dest.iterdir()) == []
    assert archive.safe_extract(bomb, tmp_path / "ok", max_bytes=64 << 20) == ["zeros.bin"]
