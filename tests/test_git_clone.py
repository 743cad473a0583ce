"""Git repositories cloned for a task, end to end: SDK, control plane, a local worker, a git HTTP server."""

from __future__ import annotations

import secrets

import taskyard
from taskyard import GitConfig, TaskStatus, WorkerConfig

from gitserver import TOKEN
from support import write


def submit(server, folder, script: str, *repos: GitConfig) -> taskyard.Task:
    write(folder, "run.sh", script)
    config = WorkerConfig(git_configs=list(repos))
    return taskyard.submit("run.sh", files_path=folder, worker_config=config, client=server.client)


def test_a_public_repository_is_cloned_over_http(server, public_repo, tmp_path):
    repo = GitConfig(remote_url=public_repo.url, local_path="lib", branch="feature", fetch_depth=1,
                     sparse_checkout_folders=["src"], username="Jane Doe", email="jane@example.com")
    script = "cat lib/src/app.py lib/feature.txt; ls lib\n"
    script += "git -C lib rev-list --count HEAD; git -C lib config user.name\n"
    task = submit(server, tmp_path, script, repo)
    assert task.wait(timeout=60) is TaskStatus.SUCCESS, task.logs()
    assert task.logs() == "print('app')\nfeature\nREADME.md\nfeature.txt\nsrc\n1\nJane Doe\n"


def test_a_clone_that_fails_is_a_runtime_error_with_gits_message(server, private_repo, tmp_path):
    task = submit(server, tmp_path, "echo must not run\n", GitConfig(remote_url=private_repo.url))
    assert task.wait(timeout=60) is TaskStatus.RUNTIME_ERROR
    assert f"git clone of {private_repo.url} failed" in task.info.reason
    assert "could not read Username" in task.info.reason and "must not run" not in task.logs()


def test_a_private_repository_is_cloned_with_the_token_from_the_vault(server, private_repo, tmp_path):
    name = "git-token-" + secrets.token_hex(4)
    taskyard.vault.create_or_update_secret(name, TOKEN, client=server.client)
    repo = GitConfig(remote_url=private_repo.url, secret_name=name, local_path="lib", save_secret=True)
    script = 'cat lib/src/app.py; git -C lib fetch --quiet origin && echo fetched; echo "$TASKYARD_GIT_TOKEN_0"\n'
    task = submit(server, tmp_path, script, repo)
    assert task.wait(timeout=60) is TaskStatus.SUCCESS, task.logs()
    assert task.logs() == "print('app')\nfetched\n*****\n"
    assert TOKEN not in (task.info.reason or "")
