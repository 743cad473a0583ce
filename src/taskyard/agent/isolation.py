"""How this worker's task runs: in its bubblewrap sandbox, as its own user, within its size.

The backend that started the agent says, in ``TASKYARD_AGENT_WORKER`` (JSON): the worker's size
and memory, the limits it set (cgroups the agent is already in, or rlimits for the task), and,
when the task is to be sandboxed, bwrap's path, the folders to hide, the interpreter folders to
show again inside those, and the user to run as (the worker's own when the control plane is root).

Inside the sandbox the task has its own PID, mount, IPC, UTS and user namespaces (and network,
with ``network=False``), no capabilities, the host's filesystem read-only, and writable only its
task folder, its output folder, its home folder and a private ``/tmp``: the paths are the same as
outside, so a task's log reads the same sandboxed or not.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

GIB = 1024**3
# What bwrap keeps, as root, for setpriv to become the worker's user; setpriv then drops them all.
SETUP_CAPS = ("CAP_SETUID", "CAP_SETGID", "CAP_SETPCAP")


class Isolation:
    def __init__(self, settings: dict) -> None:
        self.size = settings.get("size")
        self.memory = settings.get("memory")
        limits = settings.get("limits") or {}
        self.memory_cgroup = limits.get("memory_cgroup")
        self.rlimits = limits.get("rlimits") or {}
        sandbox = settings.get("sandbox") or {}
        self.bwrap: str | None = sandbox.get("bwrap")
        self.uid = sandbox.get("uid")
        self.setpriv: str | None = sandbox.get("setpriv")
        self.hide = sorted(folder for folder in sandbox.get("hide", ()) if os.path.isdir(folder))
        # The interpreter's folders, shown read-only where the sandbox would not show them (a project in /tmp)
        self.keep = [folder for folder in sandbox.get("keep", ()) if self._hidden(folder) or _within(folder, "/tmp")]

    @classmethod
    def from_env(cls) -> Isolation:
        return cls(json.loads(os.environ.get("TASKYARD_AGENT_WORKER") or "{}"))

    @property
    def sandboxed(self) -> bool:
        return self.bwrap is not None

    @property
    def task_uid(self) -> int:
        """The user the task's processes run as."""
        return self.uid if self.sandboxed and self.uid is not None else os.getuid()

    def own(self, *folders: Path) -> None:
        """Give the task's user these folders and all they hold (nothing to do when it is ours)."""
        if self.uid is None or not self.sandboxed:
            return
        for folder in folders:
            os.chown(folder, self.uid, self.uid)
            os.chmod(folder, 0o755)  # inside a folder of the control plane's own (0700)
            for parent, dirs, files in os.walk(folder):
                for name in dirs + files:
                    os.lchown(os.path.join(parent, name), self.uid, self.uid)

    def command(
        self, argv: list[str], *, cwd: Path, writable: list[Path], network: bool, read_only: Sequence[str] = ()
    ) -> tuple[list[str], dict]:
        """``argv`` as it is to be started, and the extra ``Popen`` arguments that go with it.

        ``read_only`` folders (a task's Python environment) are shown read-only even where the
        sandbox would hide them."""
        if self.bwrap is None:  # not sandboxed
            return argv, self._rlimit_args()
        mounts = self._mounts(writable, self.shadowed(read_only))
        wrapped = [self.bwrap, *self._namespaces(network), *mounts, "--chdir", str(cwd), "--"]
        return wrapped + self._as_task_user() + argv, self._rlimit_args()

    def shadowed(self, folders: Sequence[str]) -> list[str]:
        """Those of ``folders`` the sandbox would not show as they are: in a hidden folder or in ``/tmp``
        (the sandbox's own), and not in a folder it keeps."""
        if self.bwrap is None:
            return []
        found = [folder for folder in folders if self._hidden(folder) or _within(folder, "/tmp")]
        return [folder for folder in dict.fromkeys(found) if not any(_within(folder, kept) for kept in self.keep)]

    def _namespaces(self, network: bool) -> list[str]:
        """As root, bwrap makes the namespaces itself and setpriv drops to the worker's user;
        otherwise an unprivileged user namespace does it all."""
        common = ["--die-with-parent", "--new-session", "--hostname", os.environ.get("TASKYARD_WORKER_NAME", "task"),
                  "--cap-drop", "ALL"]
        if self.uid is not None:
            flags = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
            flags += [] if network else ["--unshare-net"]
            return flags + common + [arg for cap in SETUP_CAPS for arg in ("--cap-add", cap)]
        flags = ["--unshare-all", "--unshare-user", "--disable-userns"] + (["--share-net"] if network else [])
        return flags + common

    def _mounts(self, writable: list[Path], read_only: list[str]) -> list[str]:
        mounts = ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--perms", "1777", "--tmpfs", "/tmp"]
        for device in _gpu_devices(os.environ.get("CUDA_VISIBLE_DEVICES", "")):
            mounts += ["--dev-bind-try", device, device]
        for folder in self.hide:
            mounts += ["--tmpfs", folder]
        binds = [("--ro-bind", folder) for folder in self.keep + read_only]
        binds += [("--bind", str(folder)) for folder in writable]
        for parent in sorted({os.path.dirname(folder) for _, folder in binds}):
            mounts += ["--perms", "0755", "--dir", parent]  # bwrap would make it 0700: the task's user must pass
        for kind, folder in binds:
            mounts += [kind, folder, folder]
        return mounts

    def _as_task_user(self) -> list[str]:
        if self.uid is None:
            return []
        if self.setpriv is None:
            raise RuntimeError("TASKYARD_AGENT_WORKER names a user for the task to run as, but no setpriv")
        uid = str(self.uid)
        return [self.setpriv, "--reuid", uid, "--regid", uid, "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all", "--"]

    def _rlimit_args(self) -> dict:
        if not self.rlimits:
            return {}
        limits = dict(self.rlimits)

        def apply() -> None:  # in the child, before exec
            import resource

            if "as" in limits:
                resource.setrlimit(resource.RLIMIT_AS, (limits["as"], limits["as"]))
            if "nproc" in limits:
                resource.setrlimit(resource.RLIMIT_NPROC, (limits["nproc"], limits["nproc"]))

        return {"preexec_fn": apply}

    def _hidden(self, folder: str) -> bool:
        return any(_within(folder, hidden) for hidden in self.hide)

    # -- out of memory -------------------------------------------------------------------------------

    def oom_kills(self) -> int:
        """How many processes of this worker the kernel has killed for want of memory so far."""
        if self.memory_cgroup is None:
            return 0
        for name in ("memory.events", "memory.oom_control"):  # v2, v1
            try:
                with open(os.path.join(self.memory_cgroup, name)) as source:
                    for line in source:
                        key, _, value = line.partition(" ")
                        if key == "oom_kill":
                            return int(value)
            except (OSError, ValueError):
                continue
        return 0

    def oom_message(self) -> str:
        allowed = f"{self.memory / GIB:g} GiB" if self.memory else "its memory limit"
        return f"out of memory: worker size {self.size} allows {allowed}"


def _within(folder: str, other: str) -> bool:
    """Is ``folder`` ``other`` or inside it?"""
    return folder == other or folder.startswith(other.rstrip("/") + "/")


def _gpu_devices(visible: str) -> list[str]:
    """The device nodes of the GPUs this worker was given (none: the sandbox's /dev has no GPU at all)."""
    ids = [gpu for gpu in visible.split(",") if gpu]
    if not ids:
        return []
    if all(gpu.isdigit() for gpu in ids):
        cards = [f"/dev/nvidia{gpu}" for gpu in ids]
    else:  # UUIDs: the driver maps them, so every card node is shown and CUDA_VISIBLE_DEVICES picks
        cards = sorted(str(path) for path in Path("/dev").glob("nvidia[0-9]*"))
    return cards + [f"/dev/{node}" for node in ("nvidiactl", "nvidia-uvm", "nvidia-uvm-tools", "nvidia-modeset")]
