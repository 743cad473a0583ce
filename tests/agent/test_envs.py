"""The agent's Python environments on their own: requirement lines, cache keys, the cache's locks and
cap with real processes, and real builds (uv, and venv + pip without it) from a wheel made here, offline."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

from taskyard.agent import envs
from taskyard.agent.isolation import Isolation
from taskyard.backends.local.python_envs import find_uv

# Leases environment KEY of the cache in FOLDER (building it with a slow install that counts its
# runs in FOLDER/builds), says "held", and keeps it until its stdin closes.
LEASER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from taskyard.agent import envs

    folder, key = Path(sys.argv[1]), sys.argv[2]

    def install(env, scratch):
        with open(folder / "builds", "a") as count:
            count.write(key + "\\n")
        time.sleep(0.5)
        (env / "file").write_bytes(b"x" * 1000)

    lease = envs.Cache(folder, int(sys.argv[3])).lease(key, {"requirements": [key]}, install)
    print("held", "built" if lease.built else "cached", flush=True)
    sys.stdin.read()
""")


def leaser(folder: Path, key: str, cap: int = 10**9) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", LEASER, str(folder), key, str(cap)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def held(process: subprocess.Popen) -> str:
    """Wait for the leaser to hold its environment; how it got it."""
    assert process.stdout is not None
    return process.stdout.readline().strip()


def let_go(*processes: subprocess.Popen) -> None:
    for process in processes:
        process.communicate(timeout=30)


def wheel(folder: Path, name: str = "tinypkg", version: str = "1.0") -> Path:
    """A pure-Python wheel of one module, ``tinypkg.VALUE = 42``."""
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}.py": "VALUE = 42\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{path},,\n" for path in [*files, f"{info}/RECORD"])
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def run_here(command: list[str], *, cwd: Path, writable, read_only, env: dict[str, str]) -> tuple[int, str]:
    """A runner's setup hook, unsandboxed."""
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    return done.returncode, done.stdout + done.stderr


def hooks(notes: list[str]) -> envs.Hooks:
    return envs.Hooks(run_here, notes.append, lambda *folders: None, os.getuid())


# -- requirements ------------------------------------------------------------------------------------


def test_requirements_are_normalized_and_keyed_on_what_they_say():
    lines = ["six==1.16.0  # pinned", "", "# a comment", "idna  >=3", "six==1.16.0", "--index-url https://x/simple"]
    assert envs.normalize(lines) == ["--index-url https://x/simple", "idna >=3", "six==1.16.0"]
    key = envs.cache_key(envs.normalize(lines), sys.executable)
    assert key == envs.cache_key(envs.normalize(reversed(lines)), sys.executable)
    assert key != envs.cache_key(["six==1.16.0"], sys.executable)


def test_lines_that_a_cache_cannot_stand_for_are_refused():
    for line in ["-r base.txt", "--requirement=base.txt", "-c constraints.txt", "-e .", "--editable git+x",
                 "./pkg", "/abs/pkg.whl", "~/pkg", "file:///pkg"]:
        assert envs.requirement_problem(line) is not None, line
    for line in ["six==1.16.0", "--extra-index-url https://x/simple", "--find-links /var/wheels", "pkg @ https://x/p.whl"]:
        assert envs.requirement_problem(line) is None, line


def test_a_requirements_file_is_read_from_the_task_folder_only(tmp_path):
    task = tmp_path / "task"
    (task / "deps").mkdir(parents=True)
    (task / "deps" / "requirements.txt").write_text("six\n# nothing else\n")
    assert envs.requirement_lines("deps/requirements.txt", task) == ["six"]
    (tmp_path / "secret").write_text("hidden\n")
    (task / "link.txt").symlink_to(tmp_path / "secret")
    with pytest.raises(FileNotFoundError, match="not in the task folder"):
        envs.requirement_lines("link.txt", task)
    (task / "bad.txt").write_text("-r other.txt\n")
    with pytest.raises(ValueError, match="-r is not supported"):
        envs.requirement_lines("bad.txt", task)


# -- the cache ---------------------------------------------------------------------------------------


def test_concurrent_first_uses_build_once_and_the_others_wait_for_it(tmp_path):
    first, second = leaser(tmp_path, "k1"), leaser(tmp_path, "k1")
    assert sorted([held(first), held(second)]) == ["held built", "held cached"]
    assert (tmp_path / "builds").read_text() == "k1\n"
    let_go(first, second)
    later = leaser(tmp_path, "k1")
    assert held(later) == "held cached"
    let_go(later)


def test_past_the_cap_the_least_recently_used_go_first_but_never_one_in_use(tmp_path):
    cap = 2500  # room for two environments of 1000 bytes
    for key in ("old", "mid"):
        process = leaser(tmp_path, key, cap)
        assert held(process) == "held built"
        let_go(process)
    holder = leaser(tmp_path, "old", cap)  # in use
    assert held(holder) == "held cached"
    os.utime(tmp_path / "old.ready", (1, 1))  # and last used long ago
    newest = leaser(tmp_path, "new", cap)
    assert held(newest) == "held built"
    assert {key for _, key, _ in envs.Cache(tmp_path, cap).entries()} == {"old", "new"}  # "old" is held: "mid" went
    let_go(holder, newest)
    assert envs.Cache(tmp_path, 1500).evict() == ["old"]
    assert sorted(path.name for path in tmp_path.iterdir() if path.is_dir()) == ["new"]


def test_a_build_that_fails_leaves_nothing_and_one_that_died_is_cleared(tmp_path):
    cache = envs.Cache(tmp_path, 10**9)

    def failing(env: Path, scratch: Path) -> None:
        (env / "half").write_text("x")
        raise RuntimeError("no")

    with pytest.raises(RuntimeError, match="no"):
        cache.lease("k", {}, failing)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["k.lock"]
    (tmp_path / "k").mkdir()  # a build whose agent died: no marker
    (tmp_path / "k" / "half").write_text("x")
    lease = cache.lease("k", {}, lambda env, scratch: (env / "whole").write_text("y"))
    assert lease.built and [path.name for path in (tmp_path / "k").iterdir()] == ["whole"]
    lease.release()


def test_a_build_is_made_read_only_and_the_agents_and_refused_if_it_left_someone_elses_file(tmp_path):
    env = tmp_path / "env"
    (env / "bin").mkdir(parents=True)
    (env / "bin" / "tool").write_text("#!/bin/sh\n")
    os.chmod(env / "bin" / "tool", 0o4777)
    envs.seal(env, os.getuid())
    assert oct(os.stat(env / "bin" / "tool").st_mode & 0o7777) == "0o555"
    assert oct(os.stat(env / "bin").st_mode & 0o777) == "0o555"
    if os.getuid() == 0:
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "f").write_text("x")
        with pytest.raises(RuntimeError, match="belongs to another user"):
            envs.seal(tmp_path / "other", 1_700_000_001)
    envs.remove_tree(env)
    assert not env.exists()


# -- real builds, offline --------------------------------------------------------------------------------


@pytest.mark.parametrize("installer", ["uv", "pip"])
def test_an_environment_is_built_from_a_local_wheel(tmp_path, readable_dir, installer):
    uv = find_uv() if installer == "uv" else None
    if installer == "uv" and uv is None:
        pytest.skip("uv is not installed")
    wheel(readable_dir / "wheels")
    settings = envs.Settings(cache=tmp_path / "cache", uv=uv)
    lines = envs.normalize(["--no-index", f"--find-links {readable_dir / 'wheels'}", "tinypkg==1.0"])
    notes: list[str] = []
    env = envs.built(settings, lines, hooks(notes))
    assert env.built and notes[0].endswith(f"with {installer}") and ": built" in notes[-1]
    done = subprocess.run([env.python, "-c", "import sys, tinypkg; print(sys.prefix, tinypkg.VALUE)"],
                          capture_output=True, text=True, timeout=60)
    assert done.stdout == f"{env.path} 42\n", done.stderr
    if os.getuid() != 0:  # root may write anywhere (in the sandbox, its mount is read-only)
        with pytest.raises(PermissionError):
            (env.path / "planted").write_text("x")
    env.release()
    again = envs.built(settings, lines, hooks(notes))
    assert not again.built and again.path == env.path
    again.release()


def test_the_sandbox_shows_an_environment_where_it_would_hide_it(tmp_path):
    isolation = Isolation({"sandbox": {"bwrap": "/usr/bin/bwrap", "hide": [str(tmp_path)], "keep": []}})
    env = envs.Environment(tmp_path / "envs" / "k")
    shown = isolation.shadowed([*env.folders(), "/usr", "/tmp/x"])
    assert shown == [str(tmp_path / "envs" / "k"), "/tmp/x"]
    argv, _ = isolation.command(["python"], cwd=tmp_path, writable=[], network=True, read_only=shown)
    assert "--ro-bind" in argv and argv[argv.index(shown[0]) - 1] == "--ro-bind"

