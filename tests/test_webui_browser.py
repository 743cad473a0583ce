"""The dashboard in a real headless Chromium (Playwright): log in, watch a task live, kill it from its page.

Screenshots go to ``$TASKYARD_ARTIFACTS`` (else the test's tmp folder).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import taskyard
from taskyard import TaskStatus
from taskyard.client import Client

from support import Server, wait_for, write

pytestmark = pytest.mark.browser


def chromium_path() -> str | None:
    """Debian's chromium if it is installed, else None (Playwright's own build, if it downloaded one)."""
    return next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install -e '.[dev]' brings playwright")
    with sync_api.sync_playwright() as playwright:
        try:
            launched = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        except sync_api.Error as exc:
            pytest.skip(f"chromium could not be started (apt-get install chromium): {str(exc).splitlines()[0]}")
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    server = Server(tmp_path_factory.mktemp("browser"), TASKYARD_KILL_GRACE="1").start()
    server.alice = server.client.add_user("alice").token
    server.bob = server.client.add_user("bob").token
    yield server
    server.stop()


@pytest.fixture
def shots(tmp_path) -> Path:
    folder = Path(os.environ.get("TASKYARD_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def log_in(browser, server: Server, token: str):
    page = browser.new_context().new_page()
    page.goto(server.url + "/tasks")
    assert "/login" in page.url
    page.fill("input[name=token]", token)
    page.click("button[type=submit]")
    page.wait_for_url(server.url + "/tasks")
    return page


def submit(server: Server, token: str, folder: Path, code: str) -> taskyard.Task:
    write(folder, "job.py", code)
    client = Client(server.url, token)
    try:
        task = taskyard.submit("job.py", files_path=folder, client=client)
    finally:
        client.close()
    return taskyard.Task(task.id, client=server.client)


def test_a_task_appears_and_succeeds_without_a_reload_and_others_do_not_see_it(browser, site, tmp_path, shots):
    page = log_in(browser, site, site.alice)
    task = submit(site, site.alice, tmp_path / "ok", "import time\ntime.sleep(1)\nprint('hello from the task')\n")
    row = page.locator(f'tr[data-task="{task.id}"]')
    row.wait_for(timeout=20_000)
    row.locator('[data-status="success"]').wait_for(timeout=60_000)
    page.screenshot(path=str(shots / "tasks.png"), full_page=True)
    other = log_in(browser, site, site.bob)
    assert other.locator(f'tr[data-task="{task.id}"]').count() == 0
    other.goto(f"{site.url}/tasks/{task.id}")
    assert "no task" in other.content()


def test_the_log_follows_live_and_the_kill_button_kills(browser, site, tmp_path, shots):
    code = "import time\nfor i in range(1000):\n    print(f'tick {i}', flush=True)\n    time.sleep(0.3)\n"
    task = submit(site, site.alice, tmp_path / "live", code)
    wait_for(lambda: task.refresh().status is TaskStatus.IN_PROGRESS, timeout=60)
    page = log_in(browser, site, site.alice)
    page.goto(f"{site.url}/tasks/{task.id}")
    log = page.locator("pre#log")
    page.wait_for_function("() => /tick [3-9]/.test(document.querySelector('pre#log').textContent)", timeout=30_000)
    first = log.text_content()
    page.wait_for_function(
        "(n) => document.querySelector('pre#log').textContent.length > n", arg=len(first), timeout=30_000
    )
    page.screenshot(path=str(shots / "task-running.png"), full_page=True)
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("form[action$='/kill'] button")
    page.locator('[data-status="killed"]').first.wait_for(timeout=30_000)
    assert task.refresh().status is TaskStatus.KILLED
    page.screenshot(path=str(shots / "task-killed.png"), full_page=True)
