"""The Task Runner API end to end: the seed's request over HTTP, a task from git, its callback."""

from __future__ import annotations

import httpx
import pytest

import taskyard
from taskyard import bundle
from taskyard.callbacks import SIGNATURE_HEADER, verify
from taskyard.errors import NotFound

from gitserver import TOKEN, git
from receiver import Receiver, fast_server
from support import EXAMPLES, wait_for, write

SEED_TASK = (EXAMPLES.parent / "tests" / "practicus_seeds" / "task_runner" / "deployer_task.py").read_text()
OK_TASK = "import os\nprint('deployed', os.environ['MODEL_NAME'])\n"
ENV = {"DEPLOYMENT_KEY": "depl2", "PREFIX": "models", "MODEL_NAME": "sample-model", "MODEL_DIR": "no-model-here"}


@pytest.fixture(scope="module")
def tr(tmp_path_factory):
    server = fast_server(tmp_path_factory.mktemp("task-runner") / "home").start()
    taskyard.vault.create_or_update_secret("git_secret", TOKEN, client=server.client)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def models_repo(git_server, tmp_path_factory) -> str:
    """A private repository holding the seed's deployer task and a task that succeeds; its URL."""
    work = tmp_path_factory.mktemp("models-repo")
    git("init", "--quiet", "--initial-branch=main", str(work))
    write(work, "deployer_task.py", SEED_TASK)
    write(work, "tasks/ok.py", OK_TASK)
    git("add", "--all", cwd=work)
    git("commit", "--quiet", "-m", "tasks", cwd=work)
    bare = git_server.root / "private" / "models-repo.git"
    git("clone", "--quiet", "--bare", str(work), str(bare))
    return git_server.url(bare)


def request(task_id: str, file_name: str, url: str, callback: str | None = None, **extra) -> dict:
    """The seed's TaskRunnerRequest, as a CI system sends it."""
    body = {
        "task_id": task_id,
        "task_file_name": file_name,
        "worker_config": {
            "worker_size": "small",
            "personal_secrets": ["git_secret"],
            "git_configs": [{"remote_url": url, "secret_name": "git_secret"}],
            "env_variables": ENV,
        },
        "callback_url": callback,
        "callback_url_token": "ci-Token-42",
        "terminate_on_completion": True,
        **extra,
    }
    return body


def post(server, body: dict, token: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token or server.token}"}
    return httpx.post(f"{server.url}/api/v1/task-runner", json=body, headers=headers, timeout=30)


def test_the_seed_request_runs_from_git_and_calls_back(tr, models_repo):
    secret = tr.client.signing_secret()
    with Receiver() as receiver:
        good = post(tr, request("ci-ok-1", "tasks/ok.py", models_repo, receiver.url))
        bad = post(tr, request("ci-deploy-1", "deployer_task.py", models_repo, receiver.url))
        assert good.status_code == 200 and good.json()["success"] is True, good.text
        assert bad.status_code == 200 and bad.json() == {
            "success": True,
            "message": "Started task ci-deploy-1 (models-repo/deployer_task.py)",
            "task_id": "ci-deploy-1",
        }
        wait_for(lambda: len(receiver.requests) == 2, timeout=90)
    by_task = {r.json["task_id"]: r for r in receiver.requests}
    ok, failed = by_task["ci-ok-1"], by_task["ci-deploy-1"]
    assert ok.json["success"] is True and ok.json["logs"] == "deployed sample-model\n"
    assert failed.json["success"] is False and failed.json["status"] == "Failed"
    assert "Model directory is empty or does not exist" in failed.json["logs"]
    assert failed.json["task_name"] == "models-repo/deployer_task.py"
    for received in (ok, failed):
        assert received.headers["authorization"] == "Bearer ci-Token-42"
        assert verify(secret, received.body, received.headers[SIGNATURE_HEADER.lower()])


def test_the_same_task_id_again_starts_no_second_task(tr, models_repo):
    with Receiver() as receiver:
        body = request("ci-twice", "tasks/ok.py", models_repo, receiver.url)
        first = post(tr, body)
        taskyard.Task("ci-twice", client=tr.client).wait(timeout=90)
        again = post(tr, body)
        wait_for(lambda: receiver.requests, timeout=30)
    assert first.json()["task_id"] == again.json()["task_id"] == "ci-twice"
    assert again.status_code == 200 and again.json()["success"] is True
    assert "already started (Success); no second task" in again.json()["message"]
    assert [t.id for t in tr.client.list_tasks(limit=500).tasks].count("ci-twice") == 1
    assert len(tr.client.callbacks("ci-twice").deliveries) == 1
    assert len(receiver.requests) == 1


def test_a_task_file_missing_from_the_repository_says_where_it_looked(tr, models_repo):
    with Receiver() as receiver:
        assert post(tr, request("ci-missing", "nope.py", models_repo, receiver.url)).json()["success"] is True
        wait_for(lambda: receiver.requests, timeout=90)
    info = tr.client.task("ci-missing")
    assert info.alias == "Runtime Error"
    assert f"there is no nope.py in the clone of {models_repo} (cloned into models-repo/)" in info.reason
    assert receiver.requests[0].json["success"] is False


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ({"task_file_name": None}, 422, "task_file_name: "),
        ({"task_file_name": "notes.txt"}, 422, "task_file_name: "),
        ({"task_id": "bad id!"}, 422, "task_id: "),
        ({"callback_url": "ftp://127.0.0.1/x"}, 422, "callback_url: "),
        ({"callback_url": "http://example.com/x"}, 422, "allowed hosts: 127.0.0.1"),
        (
            {"worker_config": {"worker_size": "huge", "git_configs": [{"remote_url": "https://h/r.git"}]}},
            422,
            "worker_config.worker_size: ",
        ),
        ({"worker_config": {"worker_size": "small"}}, 422, "worker_config.git_configs: give a git repository"),
        (
            {"worker_config": {"personal_secrets": ["absent"], "git_configs": [{"remote_url": "https://h/r.git"}]}},
            422,
            "absent",
        ),
        ({"files": "no-such-folder"}, 404, "no folder 'no-such-folder'"),
        ({"files": "0" * 64}, 404, "no uploaded folder with bundle hash"),
    ],
)
def test_an_invalid_request_is_refused_naming_the_field(tr, change, status, message):
    body = request("ci-refused", "run.py", "https://example.com/r.git", "http://127.0.0.1:9/x")
    body.update(change)
    body = {key: value for key, value in body.items() if value is not None}
    answer = post(tr, body)
    assert answer.status_code == status, answer.text
    assert answer.json()["success"] is False and message in answer.json()["message"], answer.json()
    with pytest.raises(NotFound):
        tr.client.task("ci-refused")  # nothing was started


def test_without_a_token_the_answer_is_a_refusal_too(tr):
    answer = httpx.post(f"{tr.url}/api/v1/task-runner", json={}, timeout=30)
    assert answer.status_code == 401 and answer.json()["success"] is False
    assert "bearer token" in answer.json()["message"]


def test_files_from_a_pushed_folder_or_an_uploaded_bundle(tr, tmp_path, models_repo):
    write(tmp_path, "jobs/run.py", "print('from the pushed folder')\n")
    pushed = tr.client.push_folder("ci-jobs", tmp_path)
    assert [f.name for f in tr.client.folders()] == ["ci-jobs"]
    plain = {"task_id": "ci-folder", "task_file_name": "jobs/run.py", "worker_config": {}, "files": "ci-jobs"}
    assert post(tr, plain).json()["success"] is True
    by_hash = {**plain, "task_id": "ci-bundle", "files": pushed.bundle_sha256}
    assert post(tr, by_hash).json()["success"] is True
    for task_id in ("ci-folder", "ci-bundle"):
        task = taskyard.Task(task_id, client=tr.client)
        assert task.wait(timeout=60).alias == "Success" and task.logs() == "from the pushed folder\n"
    missing = post(tr, {**plain, "task_id": "ci-folder-2", "task_file_name": "run.py"})
    assert missing.status_code == 422
    assert missing.json()["message"] == (
        "task_file_name 'run.py' is not in the folder 'ci-jobs'; it holds: jobs/run.py"
    )
    with bundle.pack(tmp_path) as packed:
        assert packed.sha256 == pushed.bundle_sha256


def test_docs_render_from_the_package_and_show_the_seed_models(tr):
    import re

    page = httpx.get(f"{tr.url}/docs", timeout=30)
    assert page.status_code == 200
    links = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert links and all(link.startswith("/") for link in links), links  # nothing from a CDN
    for link in links:
        assert httpx.get(f"{tr.url}{link}", timeout=30).status_code == 200, link
    schema = httpx.get(f"{tr.url}/openapi.json", timeout=30).json()
    models = schema["components"]["schemas"]
    assert models["TaskRunnerRequest"]["examples"][0]["worker_config"]["worker_size"] == "small"
    assert models["TaskRunnerResponse"]["properties"]["success"]["description"] == "True or False"
    post_op = schema["paths"]["/api/v1/task-runner"]["post"]
    body = post_op["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/TaskRunnerRequest"}
    for code in ("200", "401", "422"):
        answer = post_op["responses"][code]["content"]["application/json"]["schema"]
        assert answer == {"$ref": "#/components/schemas/TaskRunnerResponse"}
