"""A worker's sandbox, started while the worker waits for its task, so the task starts with one exec.

Setting up a bubblewrap sandbox (namespaces, mounts, the switch to the task's user) costs some
milliseconds; a warm worker pays them before its task arrives. Inside the sandbox a shell waits
on a pipe. When the task comes, the agent writes it a script that exports the task's environment
and execs the task's command, so the task is that shell's process, in that sandbox: its output
goes to the pipes the agent holds, its exit status is bwrap's. The environment travels through
the pipe, never on a command line.
"""

from __future__ import annotations

import contextlib
import re
import shlex
import subprocess
from pathlib import Path

from .isolation import Isolation

SHELL = ["/bin/sh", "-s"]  # reads its script from stdin, and runs each line as it comes
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class Standby:
    def __init__(self, process: subprocess.Popen) -> None:
        self.process = process

    @classmethod
    def start(cls, isolation: Isolation, cwd: Path, writable: list[Path], env: dict[str, str]) -> Standby | None:
        """A sandbox waiting for its task (network on, output to pipes); None where there is no sandbox."""
        if not isolation.sandboxed:
            return None
        for folder in writable:
            folder.mkdir(parents=True, exist_ok=True)
        isolation.own(*writable)
        argv, extra = isolation.command(SHELL, cwd=cwd, writable=writable, network=True)
        process = subprocess.Popen(
            argv,
            cwd=cwd,
            env={"PATH": env.get("PATH", "/usr/bin:/bin")},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
            **extra,
        )
        return cls(process)

    def become(self, command: list[str], env: dict[str, str]) -> subprocess.Popen:
        """Make the waiting shell exec ``command`` with exactly ``env``; raises OSError if it is gone."""
        assert self.process.stdin is not None
        self.process.stdin.write(script(command, env).encode())
        self.process.stdin.close()
        return self.process

    def discard(self) -> None:
        """End it unused (its shell exits at the end of its script) and reap it."""
        with contextlib.suppress(OSError):
            if self.process.stdin is not None:
                self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()


def script(command: list[str], env: dict[str, str]) -> str:
    """Shell lines that leave exactly ``env`` exported, then exec ``command`` with stdin from /dev/null."""
    lines = ["unset PWD OLDPWD"]
    lines += [f"export {name}={shlex.quote(value)}" for name, value in env.items() if _NAME.fullmatch(name)]
    lines.append(f"exec {shlex.join(command)} </dev/null")
    return "\n".join(lines) + "\n"
