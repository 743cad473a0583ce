"""The dashboard over HTTP on a real control plane: every page, its permissions, CSRF, live logs, actions."""

from __future__ import annotations

import re
import secrets
import time

import httpx
import pytest

import taskyard
from taskyard import TaskStatus, WorkerConfig
from taskyard.client import Client
from taskyard.models import PoolSpec

from support import Server, wait_for, write
from webui_support import bearer, browser_like, close_clients, csrf_of, insert_tasks, logged_in

PAGES = ["/", "/tasks", "/workers", "/pools", "/flows"]


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("webui"), TASKYARD_KILL_GRACE="1").start()
    server.alice = server.client.add_user("alice").token
    server.bob = server.client.add_user("bob").token
    server.sdk_clients = {}
    yield server
    for client in server.sdk_clients.values():
        client.close()
    server.stop()


@pytest.fixture(autouse=True)
def _closed_after():
    yield
    close_clients()


def submit(server: Server, token: str, folder, code: str, **options) -> taskyard.Task:
    write(folder, "job.py", code)
    return taskyard.submit("job.py", files_path=folder, client=sdk_client(server, token), **options)


def sdk_client(server: Server, token: str) -> Client:
    if token not in server.sdk_clients:
        server.sdk_clients[token] = Client(server.url, token)
    return server.sdk_clients[token]


def running(task: taskyard.Task) -> None:
    wait_for(lambda: task.refresh().status is TaskStatus.IN_PROGRESS, timeout=60)


@pytest.mark.parametrize("path", [*PAGES, "/tasks/whatever", "/tasks/whatever/log"])
def test_a_visitor_is_sent_to_the_login_page(web, path):
    answer = httpx.get(web.url + path)
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/login?next=")


def test_a_visitor_with_a_bad_token_is_refused(web):
    client = browser_like(web)
    form = client.get("/login")
    answer = client.post("/login", data={"csrf": csrf_of(form.text), "token": "not-a-token"})
    assert answer.status_code == 401 and "not valid" in answer.text
    assert client.get("/").status_code == 303
    assert httpx.get(web.url + "/", headers={"Authorization": "Bearer not-a-token"}).status_code == 303


def test_the_login_form_checks_its_own_csrf_value_and_sets_a_strict_httponly_cookie(web):
    client = browser_like(web)
    assert client.post("/login", data={"csrf": "forged", "token": web.alice}).status_code == 403
    form = client.get("/login")
    answer = client.post("/login", data={"csrf": csrf_of(form.text), "token": web.alice, "next": "//evil.example"})
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and "taskyard_session" in v)
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert web.alice not in client.get("/").text  # the token is never written into a page


@pytest.mark.parametrize("path", PAGES)
def test_every_page_renders_for_a_cookie_and_for_a_bearer_token(web, path):
    for client in (logged_in(web, web.alice), bearer(web, web.alice)):
        answer = client.get(path)
        assert answer.status_code == 200, answer.text
        assert "alice" in answer.text and "text/html" in answer.headers["content-type"]
        partial = client.get(path, params={"partial": "1"})
        assert partial.status_code == 200 and "<html" not in partial.text


def test_static_files_are_served_from_the_package(web):
    assert "followLog" in httpx.get(web.url + "/static/dashboard.js").text
    assert ".badge" in httpx.get(web.url + "/static/dashboard.css").text
    page = bearer(web, web.alice).get("/").text
    assert "http://" not in page.replace(web.url, "") and "https://" not in page  # nothing from elsewhere


def test_a_user_sees_only_their_own_tasks_and_an_admin_sees_all(web, tmp_path):
    mine = submit(web, web.alice, tmp_path / "a", "print('from alice')\n")
    theirs = submit(web, web.bob, tmp_path / "b", "print('from bob')\n")
    assert mine.wait(timeout=60) is TaskStatus.SUCCESS and theirs.wait(timeout=60) is TaskStatus.SUCCESS
    alice = logged_in(web, web.alice)
    listing = alice.get("/tasks").text
    assert mine.id in listing and theirs.id not in listing
    assert alice.get(f"/tasks/{theirs.id}").status_code == 404
    assert alice.get(f"/tasks/{theirs.id}/log").status_code == 404
    assert theirs.id not in alice.get("/").text
    admin = bearer(web, web.token)
    listing = admin.get("/tasks").text
    assert mine.id in listing and theirs.id in listing
    only_bob = admin.get("/tasks", params={"owner": "bob"}).text
    assert theirs.id in only_bob and mine.id not in only_bob
    assert "from bob" in admin.get(f"/tasks/{theirs.id}").text
    # alice's filter by user cannot widen what she sees
    assert theirs.id not in alice.get("/tasks", params={"owner": "bob"}).text


def test_filters_by_status_pool_and_id(web, tmp_path):
    good = submit(web, web.alice, tmp_path / "g", "print(1)\n")
    bad = submit(web, web.alice, tmp_path / "f", "raise SystemExit(2)\n")
    assert good.wait(timeout=60) is TaskStatus.SUCCESS and bad.wait(timeout=60) is TaskStatus.FAILED
    alice = bearer(web, web.alice)
    failed = alice.get("/tasks", params={"status": "failed"}).text
    assert bad.id in failed and good.id not in failed
    assert good.id in alice.get("/tasks", params={"status": "Success"}).text  # the alias works too
    found = alice.get("/tasks", params={"q": good.id[:10]}).text
    assert good.id in found and bad.id not in found
    assert good.id not in alice.get("/tasks", params={"pool": "elsewhere"}).text
    assert alice.get("/tasks", params={"status": "nonsense"}).status_code == 422


def test_the_task_page_shows_history_log_outputs_and_masks_secrets(web, tmp_path):
    config = WorkerConfig(env_variables={"API_TOKEN": "hunter2-very-secret", "COLOUR": "teal"})
    code = "import os, pathlib\n(pathlib.Path(os.environ['TASKYARD_OUTPUT_DIR']) / 'result.txt').write_text('42')\n"
    code += "print('done here')\n"
    task = submit(web, web.alice, tmp_path / "o", code, worker_config=config)
    assert task.wait(timeout=60) is TaskStatus.SUCCESS
    alice = logged_in(web, web.alice)
    page = alice.get(f"/tasks/{task.id}").text
    for shown in ("In Queue", "In Progress", "Success", "done here", "result.txt", "teal", "API_TOKEN"):
        assert shown in page, shown
    assert "hunter2" not in page
    download = alice.get(f"/tasks/{task.id}/outputs")
    assert download.status_code == 200 and download.content[:2] == b"\x1f\x8b"  # gzip
    assert bearer(web, web.bob).get(f"/tasks/{task.id}/outputs").status_code == 404


def test_the_log_endpoint_follows_a_running_task(web, tmp_path):
    code = "import time\nfor i in range(3):\n    print(f'line {i}', flush=True)\n    time.sleep(0.7)\n"
    task = submit(web, web.alice, tmp_path / "l", code)
    alice = logged_in(web, web.alice)
    after, text, done = 0, "", False
    deadline = time.monotonic() + 60
    while not done and time.monotonic() < deadline:
        page = alice.get(f"/tasks/{task.id}/log", params={"after": after, "wait": 10}).json()
        after, text, done = page["last_seq"], text + page["text"], page["done"]
    assert done and text.splitlines() == ["line 0", "line 1", "line 2"]


def test_actions_need_the_csrf_value_with_a_cookie(web, tmp_path):
    task = submit(web, web.alice, tmp_path / "k", "import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    running(task)
    alice = logged_in(web, web.alice)
    assert alice.post(f"/tasks/{task.id}/kill").status_code == 403
    assert alice.post(f"/tasks/{task.id}/kill", data={"csrf": "0" * 64}).status_code == 403
    assert task.refresh().status is TaskStatus.IN_PROGRESS
    csrf = csrf_of(alice.get(f"/tasks/{task.id}").text)
    assert bearer(web, web.bob).post(f"/tasks/{task.id}/kill").status_code == 404  # not bob's
    answer = alice.post(f"/tasks/{task.id}/kill", data={"csrf": csrf})
    assert answer.status_code == 303 and answer.headers["location"] == f"/tasks/{task.id}"
    wait_for(lambda: task.refresh().status is TaskStatus.KILLED, timeout=30)


def test_rerun_submits_the_same_task_again(web, tmp_path):
    task = submit(web, web.alice, tmp_path / "r", "print('again and again')\n")
    assert task.wait(timeout=60) is TaskStatus.SUCCESS
    alice = logged_in(web, web.alice)
    csrf = csrf_of(alice.get(f"/tasks/{task.id}").text)
    answer = alice.post(f"/tasks/{task.id}/rerun", data={"csrf": csrf})
    assert answer.status_code == 303
    new_id = answer.headers["location"].rsplit("/", 1)[1]
    assert new_id != task.id
    again = taskyard.Task(new_id, client=sdk_client(web, web.alice))
    assert again.wait(timeout=60) is TaskStatus.SUCCESS
    assert "again and again" in alice.get(f"/tasks/{new_id}").text
    assert bearer(web, web.token).post(f"/tasks/{task.id}/rerun").status_code == 403  # the admin's bundle is not it


def test_workers_and_pools_pages_and_terminate(web, tmp_path):
    task = submit(web, web.alice, tmp_path / "w", "import time\nprint('up', flush=True)\ntime.sleep(120)\n")
    running(task)
    worker = task.refresh().worker_name
    alice = logged_in(web, web.alice)
    page = alice.get("/workers").text
    assert worker in page and task.id in page
    assert worker not in bearer(web, web.bob).get("/workers").text
    pools = alice.get("/pools").text
    assert re.search(r'data-pool="default"', pools)
    assert alice.post(f"/workers/{worker}/terminate").status_code == 403
    answer = alice.post(f"/workers/{worker}/terminate", data={"csrf": csrf_of(page)})
    assert answer.status_code == 303
    wait_for(lambda: task.refresh().status.is_terminal(), timeout=30)


def test_logout_forgets_the_session(web):
    alice = logged_in(web, web.alice)
    assert alice.post("/logout").status_code == 403  # a page elsewhere cannot log you out either
    answer = alice.post("/logout", data={"csrf": csrf_of(alice.get("/").text)})
    assert answer.status_code == 303 and answer.headers["location"] == "/login"
    assert alice.get("/").status_code == 303


def test_ten_thousand_tasks_page_by_page(tmp_path):
    server = Server(tmp_path / "home").start()
    try:
        server.client.add_user("carol")
        insert_tasks(server, "carol", 10_000)
        admin = bearer(server, server.token)
        seen, url, pages = [], "/tasks", 0
        while url:
            page = admin.get(url).text
            seen += re.findall(r'<tr data-task="([^"]+)"', page)
            found = re.search(r'class="next" href="([^"]+)"', page)
            url = found.group(1).replace("&amp;", "&") if found else ""
            pages += 1
        assert len(seen) == 10_000 and len(set(seen)) == 10_000 and pages == 200
        filtered = admin.get("/tasks", params={"owner": "carol", "status": "waiting_for_input"}).text
        assert len(re.findall(r"<tr data-task=", filtered)) == 50 and 'class="next"' in filtered
    finally:
        server.stop()


FLOW_TASK = "import time\ntime.sleep(0.3)\nprint('{name}')\n"


def test_flow_pages_draw_the_graph_and_the_gantt_chart(web, tmp_path):
    from taskyard.workflows import run
    from taskyard.workflows.models import FlowStatus

    for name in ("extract", "clean", "report"):
        write(tmp_path / "flow", f"{name}.py", FLOW_TASK.format(name=name))
    flow = run(tmp_path / "flow", "extract >> clean >> report", client=sdk_client(web, web.alice))
    assert flow.wait(timeout=120) is FlowStatus.SUCCESS
    alice = logged_in(web, web.alice)
    assert flow.id in alice.get("/flows").text
    page = alice.get(f"/flows/{flow.id}").text
    assert page.count('<g class="node"') == 3 and page.count('data-state="Success"') == 3
    assert page.count('<path class="edge"') == 2  # extract → clean → report
    assert page.count('<div class="bar good"') == 3
    assert bearer(web, web.bob).get(f"/flows/{flow.id}").status_code == 404
    assert flow.id not in bearer(web, web.bob).get("/flows").text
    assert flow.id in bearer(web, web.token).get("/flows").text


def test_the_table_shows_the_same_queue_positions_as_the_api(any_server, tmp_path):
    server = any_server
    pool = f"parked-{secrets.token_hex(3)}"
    server.client.create_pool(PoolSpec(name=pool, max_workers=0))
    tasks = [submit_to(server, tmp_path / f"q{i}", pool=pool) for i in range(7)]
    page = bearer(server, server.token).get("/tasks", params={"status": "in_queue", "pool": pool}).text
    shown = dict(re.findall(r'<tr data-task="([^"]+)".*?<td class="position">(\d+)</td>', page, re.S))
    assert shown == {task.id: str(server.client.task(task.id).position_in_queue) for task in tasks}
    assert sorted(shown.values()) == [str(n) for n in range(1, 8)]
    found = bearer(server, server.token).get("/tasks", params={"q": tasks[3].id}).text
    assert re.findall(r'<tr data-task="([^"]+)"', found) == [tasks[3].id]
    for task in tasks:
        task.kill()


def submit_to(server: Server, folder, **options) -> taskyard.Task:
    write(folder, "job.py", "print(1)\n")
    return taskyard.submit("job.py", files_path=folder, client=server.client, **options)


def test_the_pools_page_shows_a_group_shared_pool_to_its_members_only(web):
    admin, group, pool = web.client, f"g-{secrets.token_hex(3)}", f"p-{secrets.token_hex(3)}"
    admin.create_group(group)
    admin.add_to_group(group, "alice")
    admin.create_pool(PoolSpec(name=pool, shared_with=[f"group:{group}"]))
    try:
        assert f'data-pool="{pool}"' in logged_in(web, web.alice).get("/pools").text
        assert f'data-pool="{pool}"' not in logged_in(web, web.bob).get("/pools").text
        admin.remove_from_group(group, "alice")
        assert f'data-pool="{pool}"' not in logged_in(web, web.alice).get("/pools").text
    finally:
        admin.delete_pool(pool)
        admin.delete_group(group)
