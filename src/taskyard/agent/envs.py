"""A task's Python environment: a named virtual environment of the worker's host, or one built from
requirements and cached for the tasks that come after it.

A task asks for one with ``python_venv_name`` (a folder of the worker's venvs folder, ``~/.venv``
unless its backend says otherwise) or ``python_requirements`` (requirement lines, or a requirements
file in its folder). Its ``.py`` then runs with that environment's ``bin/python``, and each of its
commands sees it activated (``VIRTUAL_ENV``, its ``bin`` first on ``PATH``). In the sandbox the
environment, and the interpreter it was made from, are shown read-only, even inside hidden folders.

**Building.** The cache folder (``<TASKYARD_HOME>/envs`` on the local backend) holds one
environment per set of requirements and interpreter, named by their hash (:func:`cache_key`).
Installing a requirement runs the package's own code (``setup.py``, build backends), so the
install runs as the task's own code does: inside the task's sandbox, as the task's user, with only
that environment's folder and a scratch folder writable and the rest of the cache out of sight.
It gets none of the task's environment variables, no installer configuration file and a download
cache of its own: only the requirement lines, which the hash covers, decide what is installed, so
no task can slip into an environment what another task asking for the same requirements would not
get. When the install has succeeded, the agent, outside the sandbox, takes the files over (they
become its user's, read-only for everyone) and publishes the environment by renaming its marker
into place. An environment without its marker is never used; a build that died half way is
cleared by the next one. Without a sandbox the install runs as the agent's user, as the task does.

**Sharing.** Each environment has a lock file. A task holds a shared lock on it from its start to
its end: the environment is in use. The task that builds it holds it exclusively, so concurrent
first uses build it once; the others wait, then use it. These are POSIX record locks (``fcntl``),
which turn from exclusive to shared in place, so nothing can come between a build and its use.

**The cap.** After each build, while the cached environments add up to more than the cap, the least
recently used (by their marker's time, touched at each use) that no task holds are removed.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import sys
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

DEFAULT_VENVS = "~/.venv"
MIB = 1024 * 1024
DEFAULT_CACHE_MB = 5000
MAX_REQUIREMENTS_FILE = 1024 * 1024
LOCK_POLL = 0.05  # seconds between tries for a lock someone holds
TAIL_LINES = 15  # of the installer's output, in the task's status message when it fails
# What an install gets of the agent's environment; nothing of the task's.
INSTALL_ENV = ("PATH", "LANG", "LANGUAGE", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")
_COMMENT = re.compile(r"(^|\s)#.*$")
_REFUSED_SHORT = ("-r", "-c", "-e")
_REFUSED_LONG = ("--requirement", "--constraint", "--editable")


@dataclass(frozen=True)
class Settings:
    """Where a worker's environments are, as its backend says (``python`` in ``TASKYARD_AGENT_WORKER``)."""

    venvs: Path = Path(DEFAULT_VENVS).expanduser()  # the named virtual environments
    cache: Path | None = None  # where built environments are kept; None: this worker builds none
    cache_bytes: int = DEFAULT_CACHE_MB * MIB
    uv: str | None = None  # uv's path; None: pip and venv build the environments

    @classmethod
    def from_worker(cls, settings: dict) -> Settings:
        python = settings.get("python") or {}
        cache = python.get("cache")
        return cls(
            venvs=Path(python.get("venvs") or DEFAULT_VENVS).expanduser(),
            cache=Path(cache) if cache else None,
            cache_bytes=int(float(python.get("cache_mb", DEFAULT_CACHE_MB)) * MIB),
            uv=python.get("uv"),
        )


@dataclass(frozen=True)
class Hooks:
    """What preparing an environment needs of the task's runner."""

    #: run a command in the task's sandbox (``cwd``, ``writable``, ``read_only``, ``env`` as given),
    #: its output in the task's log; return its exit code and its last lines
    run: Callable[..., tuple[int, str]]
    note: Callable[[str], None]  # a line for the task's log, marked as setup
    own: Callable[..., None]  # give folders to the task's user
    builder_uid: int  # the user the install's files belong to (the task's)
    cancelled: Callable[[], bool] = lambda: False  # the task was killed meanwhile


# -- requirements ----------------------------------------------------------------------------------


def requirement_problem(line: str) -> str | None:
    """Why a requirement line cannot go into a cached environment; None when it can."""
    if any(char in line for char in "\r\n\0"):
        return "a requirement must be one line"
    text = _strip(line)
    word = text.split(maxsplit=1)[0].split("=", 1)[0] if text else ""
    if word in _REFUSED_LONG or (word[:2] in _REFUSED_SHORT and not word.startswith("--")):
        return f"{word} is not supported: list the requirements themselves"
    if text.startswith((".", "/", "~", "file:")):
        return "a local path is not supported: its files are not part of what the cache is keyed on"
    return None


def normalize(lines: Iterable[str]) -> list[str]:
    """The requirement lines without comments, blanks or repeats, whitespace collapsed, sorted."""
    return sorted({" ".join(_strip(line).split()) for line in lines} - {""})


def _strip(line: str) -> str:
    return _COMMENT.sub("", line).strip()


def requirement_lines(spec: list[str] | str, task_dir: Path) -> list[str]:
    """The normalized lines of ``spec``: the lines themselves, or a requirements file in ``task_dir``."""
    lines = _read_requirements(task_dir, spec) if isinstance(spec, str) else spec
    found = normalize(lines)
    for line in found:
        problem = requirement_problem(line)
        if problem is not None:
            raise ValueError(f"requirement {line!r}: {problem}")
    return found


def _read_requirements(task_dir: Path, name: str) -> list[str]:
    """The lines of the requirements file ``name``: a regular file inside the task folder, not a link out of it."""
    path = (task_dir / name).resolve()
    if not path.is_relative_to(task_dir.resolve()) or not path.is_file():
        raise FileNotFoundError(f"the requirements file {name} is not in the task folder")
    with open(path, "rb") as source:
        data = source.read(MAX_REQUIREMENTS_FILE + 1)
    if len(data) > MAX_REQUIREMENTS_FILE:
        raise ValueError(f"the requirements file {name} is over {MAX_REQUIREMENTS_FILE // MIB} MiB")
    return data.decode("utf-8", "replace").splitlines()


def cache_key(lines: Sequence[str], interpreter: str) -> str:
    """The name of the environment built from ``lines`` (normalized) for ``interpreter``."""
    body = json.dumps({"requirements": list(lines), "python": python_tag(interpreter)})
    return hashlib.sha256(body.encode()).hexdigest()[:24]


def python_tag(interpreter: str) -> str:
    """This Python's implementation, version and real executable: what an environment is made from."""
    version = ".".join(map(str, sys.version_info[:3]))
    base = getattr(sys, "_base_executable", None) if interpreter == sys.executable else None
    return f"{sys.implementation.name}-{version}-{os.path.realpath(base or interpreter)}"


# -- environments ----------------------------------------------------------------------------------


@dataclass
class Environment:
    """The Python environment a task runs in; a built one is held (in use) until :meth:`release`."""

    path: Path
    lease: Lease | None = None
    built: bool = False  # it was built for this task

    @property
    def python(self) -> str:
        return str(self.path / "bin" / "python")

    def command(self, argv: list[str]) -> list[str]:
        """``argv`` with this environment's Python where it names the agent's."""
        return [self.python, *argv[1:]] if argv and argv[0] == sys.executable else argv

    def variables(self, path: str) -> dict[str, str]:
        """What activates it, for an environment whose ``PATH`` is ``path``."""
        return {"VIRTUAL_ENV": str(self.path), "PATH": os.pathsep.join([str(self.path / "bin"), path])}

    def folders(self) -> list[str]:
        """The folders a task needs to see to run it: the environment and the Python it was made from."""
        found = [str(self.path)]
        home = _venv_config(self.path).get("home")
        if home:  # the folder of the base interpreter, <prefix>/bin
            found.append(os.path.dirname(os.path.realpath(home)))
        with contextlib.suppress(OSError):  # bin/python: a link to the base interpreter, maybe through others
            first = os.path.join(self.path, "bin", os.readlink(self.python))
            found += [_prefix(first), _prefix(os.path.realpath(first))]
        return list(dict.fromkeys(os.path.normpath(folder) for folder in found))

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None


def _prefix(executable: str) -> str:
    """The prefix of an interpreter at ``<prefix>/bin/python``."""
    return os.path.dirname(os.path.dirname(executable))


def _venv_config(env: Path) -> dict[str, str]:
    """The keys of ``env``'s ``pyvenv.cfg`` (none if it has none)."""
    try:
        text = (env / "pyvenv.cfg").read_text()
    except OSError:
        return {}
    pairs = (line.partition("=") for line in text.splitlines())
    return {key.strip(): value.strip() for key, sep, value in pairs if sep}


def named_venvs(folder: Path) -> dict[str, str]:
    """The virtual environments in ``folder``: name -> path, for each subfolder with a working ``bin/python``."""
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return {}
    return {entry.name: str(entry) for entry in entries if (entry / "bin" / "python").exists()}


def named(settings: Settings, name: str) -> Environment:
    """The named virtual environment ``name``; raises FileNotFoundError, naming those there are, if it is not."""
    found = named_venvs(settings.venvs)
    if name not in found:
        there = ", ".join(found) or "none"
        raise FileNotFoundError(f"no Python virtual environment {name!r} in {settings.venvs} (there: {there})")
    return Environment(Path(found[name]))


def prepare(assignment: dict, settings: Settings, task_dir: Path, hooks: Hooks) -> Environment | None:
    """The environment the assignment asks for, built if need be; None when it asks for none."""
    name = assignment.get("python_venv_name")
    if name:
        return named(settings, name)
    spec = assignment.get("python_requirements")
    if spec is None:
        return None
    return built(settings, requirement_lines(spec, task_dir), hooks)


def built(settings: Settings, lines: list[str], hooks: Hooks) -> Environment:
    """The cached environment for ``lines``, held for the task; built now if it is not there yet."""
    if settings.cache is None:
        raise RuntimeError("this worker cannot build Python environments: its backend gave it no cache folder")
    key = cache_key(lines, sys.executable)
    about = {"requirements": lines, "python": python_tag(sys.executable)}
    began = time.monotonic()
    cache = Cache(settings.cache, settings.cache_bytes)
    installer = Installer(settings, lines, hooks)
    lease = cache.lease(key, about, installer.install, hooks.cancelled)
    took = time.monotonic() - began
    hooks.note(f"Python environment {key}: {'built' if lease.built else 'cached'} ({took:.2f} s)")
    return Environment(cache.folder / key, lease, lease.built)


# -- the install -----------------------------------------------------------------------------------


class Installer:
    """Builds one environment: ``uv venv`` and ``uv pip install`` (``venv`` and ``pip`` without uv), in the sandbox."""

    def __init__(self, settings: Settings, lines: list[str], hooks: Hooks) -> None:
        self.uv = settings.uv if settings.uv and os.access(settings.uv, os.X_OK) else None
        self.lines = lines
        self.hooks = hooks

    def install(self, env: Path, scratch: Path) -> None:
        """Make the environment ``env`` (an empty folder), with ``scratch`` to work in; raise if it fails."""
        (scratch / "requirements.txt").write_text("".join(f"{line}\n" for line in self.lines))
        (scratch / "home").mkdir()
        self.hooks.own(env, scratch)
        tool = "uv" if self.uv else "pip"
        self.hooks.note(f"building a Python environment for {len(self.lines)} requirement(s) with {tool}")
        for what, command in self.steps(env, scratch):
            code, tail = self.hooks.run(command, cwd=scratch, writable=[env, scratch], read_only=self._shown(),
                                        env=install_environment(scratch))
            if code != 0:
                raise RuntimeError(f"{what} failed (exit code {code}):\n{tail}")
        seal(env, self.hooks.builder_uid)

    def steps(self, env: Path, scratch: Path) -> list[tuple[str, list[str]]]:
        python, requirements = str(env / "bin" / "python"), str(scratch / "requirements.txt")
        if self.uv:
            make = [self.uv, "venv", "--quiet", "--python", sys.executable, str(env)]
            install = [self.uv, "pip", "install", "--python", python, "-r", requirements]
        else:
            make = [sys.executable, "-m", "venv", str(env)]
            install = [python, "-m", "pip", "install", "-r", requirements]
        steps = [("making the environment", make), ("installing the requirements", install)]
        return steps if self.lines else steps[:1]

    def _shown(self) -> list[str]:
        return [os.path.dirname(os.path.realpath(self.uv))] if self.uv else []


def install_environment(scratch: Path) -> dict[str, str]:
    """An install's environment: a few of the agent's variables, a home and a download cache in ``scratch``,
    and no configuration files, so that only the requirement lines say what is installed."""
    env = {key: value for key, value in os.environ.items() if key in INSTALL_ENV or key.startswith("LC_")}
    cache = str(scratch / "download-cache")
    env.update(HOME=str(scratch / "home"), UV_CACHE_DIR=cache, UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never",
               UV_LINK_MODE="copy", UV_COMPILE_BYTECODE="1", UV_NO_PROGRESS="1", PIP_CACHE_DIR=cache,
               PIP_CONFIG_FILE=os.devnull, PIP_NO_INPUT="1", PIP_DISABLE_PIP_VERSION_CHECK="1")
    return env


def relay(pipe: IO[bytes], note: Callable[[str], None]) -> str:
    """Put each line read from ``pipe`` in the log through ``note`` until it closes; return the last ones."""
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    for raw in pipe:
        line = raw.decode("utf-8", "replace").rstrip("\n")
        note(line)
        tail.append(line)
    pipe.close()
    return "\n".join(tail)


def seal(folder: Path, builder_uid: int) -> None:
    """Make everything in ``folder`` this process's user's, and read-only for everyone.

    Only files of ``builder_uid`` (the install's user) are taken over: anything else (a hard link to
    a file of someone else's) fails the build rather than be made readable.
    """
    _seal_one(str(folder), builder_uid)
    for parent, dirs, files in os.walk(folder):
        for name in dirs + files:
            _seal_one(os.path.join(parent, name), builder_uid)


def _seal_one(path: str, builder_uid: int) -> None:
    info = os.lstat(path)
    if info.st_uid != builder_uid:
        raise RuntimeError(f"the install left {path}, which belongs to another user")
    if (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
        os.lchown(path, os.getuid(), os.getgid())
    if not stat.S_ISLNK(info.st_mode):
        mode = 0o555 if stat.S_ISDIR(info.st_mode) else 0o444 | (0o111 if info.st_mode & 0o100 else 0)
        os.chmod(path, mode)  # no set-id bits, no write bits


def remove_tree(folder: Path) -> None:
    """Remove ``folder`` and all in it, read-only folders included; nothing if it is not there."""
    if not folder.exists() and not folder.is_symlink():
        return
    for parent, _, _ in os.walk(folder):
        with contextlib.suppress(OSError):
            os.chmod(parent, 0o700)
    shutil.rmtree(folder, ignore_errors=True)


# -- the cache -------------------------------------------------------------------------------------


class Cancelled(RuntimeError):
    pass


class Lock:
    """A POSIX record lock on a file, shared or exclusive, taken by polling so that a wait can be given up."""

    def __init__(self, path: Path, cancelled: Callable[[], bool] = lambda: False) -> None:
        self.fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self.cancelled = cancelled

    def try_take(self, shared: bool) -> bool:
        """Take it, or turn the one held into this kind, if no one else is in the way."""
        assert self.fd is not None
        try:
            fcntl.lockf(self.fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                return False
            raise
        return True

    def take(self, shared: bool) -> None:
        while not self.try_take(shared):
            if self.cancelled():
                raise Cancelled("killed while waiting for the Python environment")
            time.sleep(LOCK_POLL)

    def drop(self) -> None:
        assert self.fd is not None
        fcntl.lockf(self.fd, fcntl.LOCK_UN)

    def close(self) -> None:
        """Let go of it (closing the file ends the lock)."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass
class Lease:
    """A shared hold on a cached environment: while it lasts, the environment is not evicted."""

    lock: Lock
    built: bool

    def release(self) -> None:
        self.lock.close()


class Cache:
    """Built environments in ``folder``, at most ``cap`` bytes of them that no task holds."""

    def __init__(self, folder: Path, cap: int) -> None:
        self.folder = folder
        self.cap = cap

    def lease(self, key: str, about: dict, install: Callable[[Path, Path], None],
              cancelled: Callable[[], bool] = lambda: False) -> Lease:
        """Hold environment ``key``, built first with ``install(env, scratch)`` if it is not there."""
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        lock = Lock(self._file(key, "lock"), cancelled)
        try:
            return self._hold(lock, key, about, install)
        except BaseException:
            lock.close()
            raise

    def _hold(self, lock: Lock, key: str, about: dict, install: Callable[[Path, Path], None]) -> Lease:
        lock.take(shared=True)
        built = False
        if not self.ready(key):
            lock.drop()
            lock.take(shared=False)
            if not self.ready(key):  # nobody built it while we waited
                self._build(key, about, install)
                built = True
                self.evict(keep=key)
            lock.take(shared=True)  # from exclusive, in place
        os.utime(self._file(key, "ready"))
        return Lease(lock, built)

    def ready(self, key: str) -> bool:
        return self._file(key, "ready").exists() and (self.folder / key).is_dir()

    def _file(self, key: str, kind: str) -> Path:
        return self.folder / f"{key}.{kind}"

    def _build(self, key: str, about: dict, install: Callable[[Path, Path], None]) -> None:
        """Build ``key`` (holding it exclusively) and publish it by renaming its marker into place."""
        env, scratch = self.folder / key, self._file(key, "build")
        for leftover in (env, scratch):  # of a build that died half way
            remove_tree(leftover)
        scratch.mkdir(mode=0o700)
        env.mkdir(mode=0o700)
        try:
            install(env, scratch)
            marker = scratch / "ready"
            marker.write_text(json.dumps({**about, "size": tree_size(env), "built_at": time.time()}))
            os.replace(marker, self._file(key, "ready"))
        except BaseException:
            remove_tree(env)
            raise
        finally:
            remove_tree(scratch)

    def evict(self, keep: str | None = None) -> list[str]:
        """Remove the least recently used environments no task holds (but ``keep``) until the cache fits its cap.

        Returns the keys removed. ``keep`` is the one this process holds: its own lock does not stop it.
        """
        guard = Lock(self.folder / ".evict.lock")
        try:
            guard.take(shared=False)
            return self._evict(keep)
        finally:
            guard.close()

    def _evict(self, keep: str | None) -> list[str]:
        entries = sorted(self.entries())
        total = sum(size for _, _, size in entries)
        removed = []
        for _, key, size in entries:
            if total <= self.cap:
                break
            if key != keep and self._remove(key):
                total -= size
                removed.append(key)
        return removed

    def entries(self) -> list[tuple[float, str, int]]:
        """``(last used, key, size)`` of each published environment."""
        found = []
        for marker in self.folder.glob("*.ready"):
            with contextlib.suppress(OSError, ValueError):
                found.append((marker.stat().st_mtime, marker.name.removesuffix(".ready"),
                              int(json.loads(marker.read_text())["size"])))
        return found

    def _remove(self, key: str) -> bool:
        """Remove ``key`` if no task holds it; False if one does."""
        lock = Lock(self._file(key, "lock"))
        try:
            if not lock.try_take(shared=False):
                return False
            self._file(key, "ready").unlink(missing_ok=True)
            remove_tree(self.folder / key)
            return True
        finally:
            lock.close()


def tree_size(folder: Path) -> int:
    """The bytes of the regular files in ``folder``."""
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                info = os.lstat(os.path.join(parent, name))
                total += info.st_size if stat.S_ISREG(info.st_mode) else 0
    return total
