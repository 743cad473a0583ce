"""The API against a fuzzer: schemathesis drives every operation of a live server's OpenAPI.

As an admin, a plain user and a worker's agent, with a bounded number of examples per operation:
no answer is a 5xx, each keeps to its documented schema and status codes, and the keep-alive
connection that carried an error answer still serves the next request.
"""

from __future__ import annotations

import hashlib
import math

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from taskyard.server.db.models import WorkerRow, utcnow
from taskyard.server.db.session import make_engine, make_sessionmaker, transaction

from support import Server

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the dev extra")
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.core.failures import FailureGroup  # noqa: E402
from schemathesis.specs.openapi.checks import (  # noqa: E402
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

EXAMPLES = 4  # per operation, mode and role: the whole run stays within about two minutes
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
AGENT_TOKEN = "tw_fuzz_" + "a" * 40
LONGEST_WAIT = 0.2  # long polls are cut short: what is fuzzed is the answer, not the wait


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz")
    server = Server(home, TASKYARD_HEARTBEAT_TIMEOUT="3600", TASKYARD_WARM_WORKERS="0").start()
    _fake_worker(home)
    yield server
    server.stop()


def _fake_worker(home) -> None:
    """A worker whose agent the fuzzer plays: running, with a known token, and nothing behind it."""
    engine = make_engine(f"sqlite:///{home / 'taskyard.db'}")
    try:
        with transaction(make_sessionmaker(engine)) as session:
            session.add(
                WorkerRow(
                    name="tw-fuzz", user_id=None, pool="default", backend="local", status="Running",
                    size="X-Small", image="python", token_hash=hashlib.sha256(AGENT_TOKEN.encode()).hexdigest(),
                    keep=False, created_at=utcnow(), last_seen_at=utcnow(),
                )
            )  # fmt: skip
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def api_schema(live):
    return schemathesis.openapi.from_url(live.url + "/openapi.json")


def _caller(token: str):
    """A keep-alive session and the Authorization header of one role."""
    session = requests.Session()
    yield session, {"Authorization": f"Bearer {token}"}
    session.close()


@pytest.fixture(scope="module")
def as_admin(live):
    yield from _caller(live.token)


@pytest.fixture(scope="module")
def as_user(live):
    yield from _caller(live.client.add_user("fuzz-user").token)


@pytest.fixture(scope="module")
def as_agent(live):
    yield from _caller(AGENT_TOKEN)


@pytest.mark.parametrize("role", ["as_admin", "as_user", "as_agent"])
def test_the_api_holds_under_fuzzing(request, role, api_schema, live):
    """Every operation, positive and negative examples; every failure found is reported at the end."""
    caller = request.getfixturevalue(role)
    failures: list[str] = []
    for result in api_schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failures += _fuzz(operation, mode, caller, live)
    assert not failures, "\n\n".join(failures[:20])


def _fuzz(operation, mode, caller, live) -> list[str]:
    found: list[str] = []

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case) -> None:
        try:
            _call(case, caller, live)
        except (Exception, FailureGroup) as exc:  # every failure is collected and reported at the end
            found.append(f"{operation.label} ({mode.value}): {type(exc).__name__}: {str(exc)[:1500]}")

    try:
        run()
    except Unsatisfiable:  # no negative example exists for an operation without inputs
        pass
    except (Exception, FailureGroup) as exc:  # a failure hypothesis raised itself, after its shrinking
        found.append(f"{operation.label} ({mode.value}): {type(exc).__name__}: {str(exc)[:1500]}")
    return found[:3]


def _call(case, caller, live) -> None:
    session, headers = caller
    _shorten_waits(case)
    response = case.call_and_validate(session=session, headers=headers, checks=CHECKS, timeout=30)
    if response.status_code >= 400:  # the same connection serves the next request
        assert session.get(live.url + "/api/v1/health", timeout=10).status_code == 200


def _shorten_waits(case) -> None:
    for name in ("wait", "timeout"):
        value = (case.query or {}).get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
            case.query[name] = min(value, LONGEST_WAIT) if value >= 0 else value


def test_an_agent_log_chunk_stamped_nan_is_a_422_naming_ts(as_agent, live):
    session, headers = as_agent
    body = '{"chunks": [{"seq": 1, "stream": "stdout", "ts": NaN, "text": "x"}]}'
    answer = session.post(live.url + "/api/v1/agent/tasks/nothing/logs", data=body,
                          headers=headers | {"Content-Type": "application/json"}, timeout=10)
    assert answer.status_code == 422, answer.text
    assert "ts" in answer.text
