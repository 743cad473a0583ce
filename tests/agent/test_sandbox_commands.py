"""How the agent starts a task's commands: the bwrap sandbox it builds, rlimits, out-of-memory counts."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from taskyard.agent.isolation import Isolation
from taskyard.agent.standby import Standby, script

SANDBOX = {"bwrap": "/usr/bin/bwrap", "setpriv": "/usr/bin/setpriv", "hide": ["/"], "keep": []}


def command(isolation: Isolation, tmp_path: Path, network: bool = True) -> list[str]:
    argv, _ = isolation.command(["python", "task.py"], cwd=tmp_path, writable=[tmp_path], network=network)
    return argv


def test_as_root_the_task_runs_as_the_workers_own_user_with_no_capability(tmp_path):
    argv = command(Isolation({"sandbox": {**SANDBOX, "uid": 1_700_000_123}}), tmp_path)
    assert argv[0] == "/usr/bin/bwrap" and "--unshare-pid" in argv and "--unshare-user" not in argv
    task_user = argv[argv.index("--") + 1 :]
    assert task_user[:5] == ["/usr/bin/setpriv", "--reuid", "1700000123", "--regid", "1700000123"]
    assert "--bounding-set=-all" in task_user and task_user[-2:] == ["python", "task.py"]


def test_otherwise_a_user_namespace_does_it_and_nested_ones_are_refused(tmp_path):
    argv = command(Isolation({"sandbox": {**SANDBOX, "uid": None}}), tmp_path)
    assert {"--unshare-all", "--unshare-user", "--disable-userns", "--share-net"} <= set(argv)
    assert argv[argv.index("--") + 1 :] == ["python", "task.py"]


def test_no_network_means_a_network_namespace_of_its_own(tmp_path):
    for uid in (None, 1_700_000_123):
        argv = command(Isolation({"sandbox": {**SANDBOX, "uid": uid}}), tmp_path, network=False)
        assert "--share-net" not in argv
        assert "--unshare-net" in argv or "--unshare-all" in argv


def test_only_the_workers_own_gpus_are_in_its_dev(tmp_path, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    argv = command(Isolation({"sandbox": {**SANDBOX, "uid": None}}), tmp_path)
    binds = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--dev-bind-try"]
    assert "/dev/nvidia1" in binds and "/dev/nvidiactl" in binds and "/dev/nvidia0" not in binds
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert "--dev-bind-try" not in command(Isolation({"sandbox": {**SANDBOX, "uid": None}}), tmp_path)


def test_writable_folders_are_bound_after_the_hidden_ones_are_emptied(tmp_path):
    argv = command(Isolation({"sandbox": {**SANDBOX, "hide": [str(tmp_path.parent)], "uid": None}}), tmp_path)
    assert argv.index(str(tmp_path.parent)) < argv.index("--bind")
    assert argv[argv.index("--bind") : argv.index("--bind") + 3] == ["--bind", str(tmp_path), str(tmp_path)]


def test_unsandboxed_the_command_is_left_as_it_is(tmp_path):
    argv, extra = Isolation({}).command(["python", "task.py"], cwd=tmp_path, writable=[tmp_path], network=True)
    assert argv == ["python", "task.py"] and extra == {}


def test_rlimits_hold_a_task_to_its_memory_when_there_is_no_cgroup(tmp_path):
    isolation = Isolation({"limits": {"kind": "rlimit", "rlimits": {"as": 512 * 1024**2}}})
    hog = "import sys\ntry:\n    b = bytearray(1024**3)\nexcept MemoryError:\n    sys.exit(7)\n"
    argv, extra = isolation.command([sys.executable, "-c", hog], cwd=tmp_path, writable=[], network=True)
    assert subprocess.run(argv, **extra, timeout=60).returncode == 7
    assert subprocess.run([sys.executable, "-c", hog], timeout=60).returncode == 0  # the limit made the difference


def test_out_of_memory_kills_are_read_from_the_workers_memory_cgroup(tmp_path):
    (tmp_path / "memory.oom_control").write_text("oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
    isolation = Isolation({"size": "Small", "memory": 2 * 1024**3, "limits": {"memory_cgroup": str(tmp_path)}})
    assert isolation.oom_kills() == 3
    assert isolation.oom_message() == "out of memory: worker size Small allows 2 GiB"
    (tmp_path / "memory.events").write_text("low 0\nhigh 0\nmax 4\noom 2\noom_kill 1\n")
    assert isolation.oom_kills() == 1  # cgroup v2's file, where there is one
    assert Isolation({}).oom_kills() == 0


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_a_sandboxed_command_really_runs_and_sees_its_own_pid_namespace(tmp_path):
    from taskyard.backends.local.sandbox import make_policy

    policy = make_policy("required", (tmp_path / "home",))
    isolation = Isolation({"sandbox": policy.agent_settings("tw-test")})
    isolation.own(tmp_path)
    argv, extra = isolation.command(["sh", "-c", "echo $$; ls /proc | grep -c '^[0-9]'"], cwd=tmp_path,
                                    writable=[tmp_path], network=True)
    done = subprocess.run(argv, **extra, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    pid, count = done.stdout.split()
    assert int(pid) <= 3 and int(count) <= 4


def test_a_standby_script_exports_exactly_the_env_and_quotes_everything():
    env = {"A": "it's\nmultiline $HOME `x`", "PATH": "/usr/bin:/bin", "not-a-name": "skipped"}
    text = script(["python", "-u", "my task.py"], env)
    run_env = text.replace("exec python -u 'my task.py'", "exec env -0")
    done = subprocess.run(["/bin/sh", "-s"], input=run_env, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=30)
    shown = dict(entry.split("=", 1) for entry in done.stdout.split("\0") if entry)
    assert shown == {"A": env["A"], "PATH": "/usr/bin:/bin"}
    assert text.rstrip().endswith("exec python -u 'my task.py' </dev/null")


@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
def test_a_standby_sandbox_becomes_the_task_with_its_env_and_exit_status(tmp_path):
    from taskyard.backends.local.sandbox import make_policy

    isolation = Isolation({"sandbox": make_policy("required", (tmp_path / "home",)).agent_settings("tw-standby")})
    standby = Standby.start(isolation, tmp_path, [tmp_path], {"PATH": "/usr/bin:/bin"})
    assert standby is not None
    code = "echo \"$SECRET\" >&2; read -r line || echo stdin-empty; exit 3"
    process = standby.become(["sh", "-c", code], {"PATH": "/usr/bin:/bin", "SECRET": "s3 cr3t"})
    with process.stdout, process.stderr:
        out, err = process.stdout.read(), process.stderr.read()
    assert (process.wait(timeout=30), out.decode(), err.decode()) == (3, "stdin-empty\n", "s3 cr3t\n")
    unused = Standby.start(isolation, tmp_path, [tmp_path], {"PATH": "/usr/bin:/bin"})
    assert unused is not None
    unused.discard()
    assert unused.process.returncode == 0


def test_an_interpreter_in_tmp_or_a_hidden_folder_is_shown_read_only(tmp_path):
    keep = ["/tmp/project/.venv", "/root/.pyenv/versions/3", "/usr/lib/python3"]
    argv = command(Isolation({"sandbox": {**SANDBOX, "hide": ["/root"], "keep": keep, "uid": None}}), tmp_path)
    shown = [argv[i + 1] for i, arg in enumerate(argv) if arg == "--ro-bind"]
    assert "/tmp/project/.venv" in shown and "/root/.pyenv/versions/3" in shown  # /tmp is the sandbox's own
    assert "/usr/lib/python3" not in shown  # the host's, seen as it is
