"""``/metrics`` on a real control plane: real tasks run, then the scrape shows them."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families

import taskyard
from taskyard import TaskStatus

from receiver import Receiver
from support import Server, wait_for, write


def scrape(server: Server, **headers: str) -> dict[tuple[str, tuple], float]:
    answer = httpx.get(f"{server.url}/metrics", headers=headers)
    assert answer.status_code == 200, answer.text
    samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def run(server: Server, folder, code: str, **options) -> taskyard.Task:
    write(folder, "task.py", code)
    return taskyard.submit("task.py", files_path=folder, client=server.client, **options)


def test_a_scrape_counts_tasks_logs_and_durations(server, tmp_path):
    before = scrape(server)
    ok = run(server, tmp_path / "ok", "print('x' * 999)\n")
    bad = run(server, tmp_path / "bad", "raise SystemExit(3)\n")
    assert ok.wait(timeout=60) is TaskStatus.SUCCESS and bad.wait(timeout=60) is TaskStatus.FAILED
    after = scrape(server)
    for state in ("success", "failed"):
        assert value(after, "taskyard_tasks", state=state) == value(before, "taskyard_tasks", state=state) + 1
    assert value(after, "taskyard_log_bytes_total") - value(before, "taskyard_log_bytes_total") >= 1000
    started = value(after, "taskyard_task_queue_seconds_count", pool="default")
    assert started - value(before, "taskyard_task_queue_seconds_count", pool="default") == 2
    ran = ("taskyard_task_run_seconds_count", {"pool": "default", "status": "success"})
    assert value(after, ran[0], **ran[1]) == value(before, ran[0], **ran[1]) + 1
    assert value(after, "taskyard_task_run_seconds_sum", pool="default", status="failed") > 0


def test_queue_depth_and_workers_are_read_from_the_store(tmp_path):
    server = Server(tmp_path / "home", TASKYARD_MAX_WORKERS="1", TASKYARD_WARM_WORKERS="0").start()
    try:
        blocker = run(server, tmp_path / "a", "import time; print('up', flush=True); time.sleep(60)\n")
        queued = [run(server, tmp_path / f"q{i}", "print(1)\n") for i in range(3)]
        wait_for(lambda: blocker.refresh().status is TaskStatus.IN_PROGRESS, timeout=60)
        samples = scrape(server)
        assert value(samples, "taskyard_queue_depth", pool="default") == 3
        assert value(samples, "taskyard_tasks", state="in_queue") == 3
        assert value(samples, "taskyard_tasks", state="in_progress") == 1
        assert value(samples, "taskyard_workers", state="Running", backend="local") == 1
        for task in [blocker, *queued]:
            task.kill()
        assert value(scrape(server), "taskyard_queue_depth", pool="default") == 0
    finally:
        server.stop()


def test_callback_deliveries_are_counted_by_outcome(server, tmp_path):
    before = scrape(server)
    with Receiver() as receiver:
        task = run(server, tmp_path / "cb", "print(1)\n", callback_url=receiver.url)
        assert task.wait(timeout=60) is TaskStatus.SUCCESS
        wait_for(
            lambda: (
                value(scrape(server), "taskyard_callback_deliveries", state="delivered")
                > value(before, "taskyard_callback_deliveries", state="delivered")
            ),
            timeout=30,
        )
    after = scrape(server)
    grown = value(after, "taskyard_callback_attempts_total", outcome="delivered")
    assert grown == value(before, "taskyard_callback_attempts_total", outcome="delivered") + 1


def test_with_the_token_policy_a_scrape_needs_an_admin_token(tmp_path):
    server = Server(tmp_path / "home", TASKYARD_METRICS="token").start()
    try:
        assert httpx.get(f"{server.url}/metrics").status_code == 401
        user_token = server.client.add_user("metrics-user").token
        assert httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {user_token}"}).status_code == 403
        samples = scrape(server, Authorization=f"Bearer {server.token}")
        assert ("taskyard_tasks", (("state", "success"),)) in samples
    finally:
        server.stop()


def test_loopback_scrapes_need_no_token_by_default(server):
    assert "taskyard_tasks" in httpx.get(f"{server.url}/metrics").text
