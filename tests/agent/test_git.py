"""The agent's git clones, run by a real agent (``TaskRun``) in its sandbox against a real git server.

No control plane: a stand-in answers the agent's calls as one would and keeps all it was sent,
so a test can look for the token in everything that left the agent.
"""

from __future__ import annotations

import base64
import io
import json
import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from taskyard.agent import archive, git
from taskyard.agent.isolation import Isolation
from taskyard.agent.runner import TaskRun
from taskyard.backends.local.sandbox import make_policy

from gitserver import TOKEN, Repo, make_repo

GIT_NOTES = ("Authentication failed", "could not read Username")  # git's words for a refused or missing token


class ControlPlane:
    """Answers an agent as a control plane would, and keeps every call it was sent."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, object]] = []

    def call(self, method: str, path: str, body=None, *, timeout: float = 30, raw: bytes | None = None):
        self.calls.append((method, path, body if raw is None else raw.decode("latin-1")))
        if path.endswith("/logs"):
            return {"acked": body["chunks"][-1]["seq"]}
        return {}

    def sent(self) -> str:
        """Everything the agent sent, as one text."""
        return json.dumps(self.calls)

    def logs(self) -> str:
        bodies = [body for _, path, body in self.calls if path.endswith(("/logs", "/finish"))]
        return "".join(chunk["text"] for body in bodies for chunk in body["chunks"])

    def finish(self) -> dict:
        return next(body for _, path, body in self.calls if path.endswith("/finish"))


@pytest.fixture(scope="module")
def isolation() -> Isolation:
    """The sandbox a local worker's task gets.

    Never none: unsandboxed, the agent ends every process below it when a step ends, this test's own too."""
    policy = make_policy("auto", ())
    if policy.bwrap is None:
        pytest.skip(f"no sandbox here: {policy.problem}")
    return Isolation({"sandbox": policy.agent_settings("git-test")})


class Agent:
    """Runs one task the way a worker's agent does, with ``git_configs`` built by the test."""

    def __init__(self, folder: Path, isolation: Isolation) -> None:
        self.folder = folder
        self.isolation = isolation
        self.plane = ControlPlane()

    def task(self, git_configs: list[dict], script: str = "true\n", env: dict[str, str] | None = None) -> dict:
        """Run ``script`` (bash) after the clones; the finish the agent reported."""
        TaskRun(self.plane, self.folder / "worker", _assignment(git_configs, script, env), self.isolation).run()
        return self.plane.finish()

    @property
    def task_dir(self) -> Path:
        return self.folder / "worker" / "task"

    @property
    def home_dir(self) -> Path:
        return self.folder / "worker" / "home"

    def clone_git(self, *args: str) -> str:
        """Run git in the task's first clone, as the agent's user."""
        return subprocess.run(["git", "-c", "safe.directory=*", "-C", str(self.task_dir / "clone"), *args],
                              capture_output=True, text=True, check=True).stdout

    def files_holding(self, text: str) -> list[Path]:
        """The files of the worker (task folder, home, clones and all) that contain ``text``."""
        root = self.folder / "worker"
        return [path for path in root.rglob("*") if path.is_file() and text.encode() in path.read_bytes()]


def _assignment(git_configs: list[dict], script: str, env: dict[str, str] | None) -> dict:
    bundle = _bundle({"run.sh": script})
    return {
        "task_id": "t-git", "file_name": "run.sh", "kind": "sh", "env": env or {}, "capture_output": True,
        "log_seq": 0, "kill_grace": 1.0, "git_configs": git_configs, "network": True, "bundle": bundle,
    }


def _bundle(files: dict[str, str]) -> str:
    with tempfile.TemporaryDirectory() as folder:
        for name, text in files.items():
            (Path(folder) / name).write_text(text)
        out = io.BytesIO()
        archive.pack_dir(Path(folder), out)
    return base64.b64encode(out.getvalue()).decode()


@pytest.fixture
def agent(tmp_path, isolation) -> Agent:
    return Agent(tmp_path, isolation)


def private(repo: Repo, **config) -> dict:
    """A git config entry for ``repo``, cloned into ``clone``, with the right token unless told otherwise."""
    return {"remote_url": repo.url, "local_path": "clone", "token": TOKEN, **config}


def blob_of(repo: Repo, path: str) -> str:
    return subprocess.run(["git", "-C", str(repo.path), "rev-parse", f"main:{path}"],
                          capture_output=True, text=True, check=True).stdout.strip()


def checked_out(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*")
                  if path.is_file() and ".git" not in path.relative_to(folder).parts)


# -- the token ----------------------------------------------------------------------------------------


def test_a_private_repository_clones_with_its_token(agent, private_repo, git_server):
    finish = agent.task([private(private_repo)], "cat clone/src/app.py\n")
    assert finish["exit_code"] == 0 and finish["error"] is None
    assert checked_out(agent.task_dir / "clone") == list(private_repo.main_files)
    assert agent.plane.logs() == "print('app')\n"
    assert git_server.usernames(private_repo.url) and set(git_server.usernames(private_repo.url)) == {"x-access-token"}
    assert agent.files_holding(TOKEN) == [] and TOKEN not in agent.plane.sent()


@pytest.mark.parametrize("token", ["not-the-token", None], ids=["wrong", "missing"])
def test_a_wrong_or_missing_token_fails_at_once_with_gits_message(agent, private_repo, token):
    config = {**private(private_repo), "token": token} if token else {"remote_url": private_repo.url}
    finish = agent.task([config], "echo must not run\n")
    assert finish["exit_code"] is None
    assert finish["error"].startswith(f"could not prepare the task: git clone of {private_repo.url} failed")
    assert any(note in finish["error"] for note in GIT_NOTES), finish["error"]
    assert "must not run" not in agent.plane.logs()
    for secret in (TOKEN, token or TOKEN):
        assert secret not in agent.plane.sent() and agent.files_holding(secret) == []


def test_the_token_is_in_no_command_line(agent, private_repo, readable_dir):
    wrapper = readable_dir / "git"  # the first git on the PATH notes how it was started, then runs git
    wrapper.write_text('#!/bin/sh\nprintf "%s\\n" "$0 $*" >> "$HOME/argv.txt"\nexec /usr/bin/git "$@"\n')
    wrapper.chmod(0o755)
    env = {"PATH": f"{readable_dir}:{os.environ['PATH']}"}
    finish = agent.task([private(private_repo, sparse_checkout_folders=["docs"])], env=env)
    assert finish["exit_code"] == 0
    argv = (agent.home_dir / "argv.txt").read_text()
    assert len(argv.splitlines()) == 2 and " clone --quiet " in argv and " sparse-checkout set " in argv
    assert TOKEN not in argv and "TASKYARD_GIT_TOKEN_0" in argv  # the helper names the variable, nothing more


def test_a_storing_credential_helper_of_the_image_never_sees_the_token(agent, private_repo, readable_dir):
    system = readable_dir / "gitconfig"  # a worker image's /etc/gitconfig that keeps every password
    system.write_text(f"[credential]\n\thelper = store --file {agent.home_dir}/stored\n")
    script = "git -C clone fetch --quiet origin && echo fetched\n"
    env = {"GIT_CONFIG_SYSTEM": str(system)}
    finish = agent.task([private(private_repo, save_secret=True)], script, env)
    assert finish["exit_code"] == 0 and agent.plane.logs() == "fetched\n"
    assert not (agent.home_dir / "stored").exists() and agent.files_holding(TOKEN) == []


def test_the_token_is_masked_in_all_the_agent_sends(agent, private_repo):
    finish = agent.task([private(private_repo, save_secret=True)], 'echo "the token is $TASKYARD_GIT_TOKEN_0"\n')
    assert finish["exit_code"] == 0
    assert agent.plane.logs() == "the token is *****\n" and TOKEN not in agent.plane.sent()


def test_a_failure_message_has_the_token_masked():
    repo = git.Repository({"remote_url": "https://example.com/r.git", "token": TOKEN}, 0)
    logged: list[str] = []
    with pytest.raises(RuntimeError) as failure:
        git.clone(repo, lambda command, env: (128, f"fatal: {env[repo.variable]} refused\n"), logged.append)
    message = "git clone of https://example.com/r.git failed with exit code 128: fatal: ***** refused"
    assert str(failure.value) == message
    git.clone(repo, lambda command, env: (0, f"warning: {TOKEN}\n"), logged.append)
    assert logged == ["warning: *****\n"]


def test_a_token_is_only_for_https_remotes():
    for url in ("git@example.com:r.git", "ssh://example.com/r.git", "file:///srv/r.git", "/srv/r.git"):
        repo = git.Repository({"remote_url": url, "token": TOKEN, "save_secret": True}, 0)
        assert repo.credential_settings() == [] and git.task_env([repo]) == {}
        assert repo.env() == {"GIT_TERMINAL_PROMPT": "0"}


# -- what is cloned -----------------------------------------------------------------------------------


def test_sparse_checkout_gets_only_the_named_folders(agent, private_repo):
    finish = agent.task([private(private_repo, sparse_checkout_folders=["docs/api", "src"])])
    assert finish["exit_code"] == 0, finish
    # git's cone mode: a folder, and the files right in the folders above it
    assert checked_out(agent.task_dir / "clone") == ["README.md", "docs/api/index.md", "docs/guide.md", "src/app.py"]
    missing = agent.clone_git("rev-list", "--objects", "--missing=print", "HEAD").split()
    assert [entry for entry in missing if entry.startswith("?")] == [f"?{blob_of(private_repo, 'data/rows.csv')}"]


def test_sparse_checkout_from_a_server_without_filters_is_a_full_clone(agent, git_server):
    repo = make_repo(git_server, "no-filters", private=True, filters=False)
    finish = agent.task([private(repo, sparse_checkout_folders=["src"])])
    assert finish["exit_code"] == 0, finish
    assert checked_out(agent.task_dir / "clone") == ["README.md", "src/app.py"]
    assert "filtering not recognized by server" in agent.plane.logs()  # git's warning, in the task's log


def test_a_branch_and_a_fetch_depth(agent, private_repo):
    finish = agent.task([private(private_repo, branch="feature", fetch_depth=2)])
    assert finish["exit_code"] == 0, finish
    assert (agent.task_dir / "clone" / private_repo.feature_only).is_file()
    assert agent.clone_git("rev-list", "--count", "HEAD").strip() == "2"
    assert agent.clone_git("rev-parse", "--abbrev-ref", "HEAD").strip() == "feature"


def test_a_public_repository_needs_no_token(agent, public_repo):
    finish = agent.task([{"remote_url": public_repo.url}], "ls | sort\n")
    name = public_repo.url.rsplit("/", 1)[1].removesuffix(".git")  # the clone's folder, when no local_path says
    assert finish["exit_code"] == 0 and agent.plane.logs() == "\n".join(sorted([name, "run.sh"])) + "\n"


@pytest.mark.parametrize("save_secret", [True, False, None])
def test_save_secret_decides_whether_the_tasks_own_git_has_the_token(agent, private_repo, save_secret):
    script = "export GIT_TERMINAL_PROMPT=0\ngit -C clone fetch --quiet origin && echo fetched\n"
    finish = agent.task([private(private_repo, save_secret=save_secret)], script)
    assert (finish["exit_code"] == 0) is (save_secret is True), agent.plane.logs()
    if save_secret:
        assert agent.plane.logs() == "fetched\n"
        assert "TASKYARD_GIT_TOKEN_0" in (agent.home_dir / ".gitconfig").read_text()
    else:
        assert any(note in agent.plane.logs() for note in GIT_NOTES), agent.plane.logs()
    assert agent.files_holding(TOKEN) == []


def test_username_and_email_are_the_clones_own(agent, private_repo, git_server):
    config = private(private_repo, username="Jane Doe", email="jane@example.com")
    script = "git -C clone config user.name; git -C clone config user.email\n"
    finish = agent.task([config], script)
    assert finish["exit_code"] == 0 and agent.plane.logs() == "Jane Doe\njane@example.com\n"
    local = agent.task_dir / "clone" / ".git" / "config"
    assert "Jane Doe" in local.read_text() and "Jane Doe" not in (agent.home_dir / ".gitconfig").read_text()
    assert set(git_server.usernames(private_repo.url)) == {"Jane Doe"}  # the user name that went with the token


def test_each_repository_gets_its_own_variable(agent, private_repo, public_repo):
    configs = [{"remote_url": public_repo.url}, private(private_repo, save_secret=True)]
    finish = agent.task(configs, 'echo "${TASKYARD_GIT_TOKEN_0:-none} $TASKYARD_GIT_TOKEN_1"\n')
    assert finish["exit_code"] == 0 and agent.plane.logs() == "none *****\n"
