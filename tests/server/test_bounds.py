"""Every input bounded: out of range numbers and strings are a 422 that names the field, never a 500."""

from __future__ import annotations

import httpx
import pytest

import taskyard
from taskyard.status import TaskStatus

from support import write

BODY = {"file_name": "a.py", "bundle_sha256": "0" * 64, "bundle_size": 1}


def _post(server, path: str, body: dict) -> httpx.Response:
    return server.client._http.post(path, json=body)


@pytest.mark.parametrize("value", ["Infinity", "NaN", 1e300, 1e12, True, [], {}, 0, -5, "1e999"])
def test_a_time_to_live_out_of_range_is_a_422(any_server, value):
    answer = _post(any_server, "/tasks", {**BODY, "time_to_live": value})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "time_to_live"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("file_name", "a\0.py"),
        ("file_name", "x" * 300 + ".py"),
        ("file_name", "a\n.py"),
        ("task_id", "x\n"),
        ("pool", "default\n"),
    ],
)
def test_strings_with_control_characters_or_too_long_are_a_422(any_server, field, value):
    answer = _post(any_server, "/tasks", {**BODY, field: value})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field


@pytest.mark.parametrize(
    "env",
    [{"BIG": "x" * (1 << 20)}, {f"V{i}": "y" * 60_000 for i in range(10)}, {"N" * 300: "1"}],
    ids=["one-huge-value", "too-much-in-all", "long-name"],
)
def test_env_variables_are_bounded_at_submit(any_server, env):
    answer = _post(any_server, "/tasks", {**BODY, "worker_config": {"env_variables": env}})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == "worker_config.env_variables"


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("logs", {"after": "1e30"}, "after"),
        ("logs", {"after": str(2**70)}, "after"),
        ("logs", {"wait": "nan"}, "wait"),
        ("logs", {"wait": "inf"}, "wait"),
        ("wait", {"timeout": "nan"}, "timeout"),
        ("logs/tail", {"max_bytes": "0"}, "max_bytes"),
    ],
)
def test_query_numbers_out_of_range_are_a_422(any_server, tmp_path, path, params, field):
    write(tmp_path, "a.py", "print(1)\n")
    task = taskyard.submit("a.py", files_path=tmp_path, client=any_server.client)
    answer = any_server.client._http.get(f"/tasks/{task.id}/{path}", params=params)
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["field"] == field
    assert task.wait(timeout=30) is TaskStatus.SUCCESS


def test_a_list_limit_out_of_range_is_a_422(any_server):
    for limit in ("0", "100000", "nan"):
        answer = any_server.client._http.get("/tasks", params={"limit": limit})
        assert answer.status_code == 422 and answer.json()["error"]["field"] == "limit"
