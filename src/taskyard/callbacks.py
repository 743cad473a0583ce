"""Task callbacks, as clients and receivers see them: the body, the signature, the delivery record.

When a task that has a ``callback_url`` ends, in any terminal status, the control plane POSTs a
:class:`CallbackBody` as JSON to it, with these headers:

- ``Authorization: Bearer <callback_url_token>`` when the task gave a token;
- ``X-Taskyard-Signature: sha256=<hex>``: HMAC-SHA256 of the exact body bytes under the
  submitting user's signing secret (``taskyard tasks signing-secret``); check it with :func:`verify`;
- ``X-Taskyard-Delivery``: the delivery's id. Delivery is at least once: a receiver that must act
  once drops a delivery id it has seen.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from urllib.parse import urlsplit

from pydantic import BaseModel

from taskyard.status import TaskStatus

SIGNATURE_HEADER = "X-Taskyard-Signature"
DELIVERY_HEADER = "X-Taskyard-Delivery"


class CallbackBody(BaseModel):
    """What a callback carries (the seed's ``TaskRunnerCallbackRequest``, plus the status by name)."""

    model_config = {
        "use_attribute_docstrings": True,
        "json_schema_extra": {
            "examples": [
                {
                    "task_name": "deployer_task.py",
                    "task_id": "23erd-rt56",
                    "success": True,
                    "logs": "Finished model deployment task successfully.\n",
                    "status": "Success",
                }
            ]
        },
    }

    task_name: str
    """The task's file name"""

    task_id: str
    """Unique task ID"""

    success: bool
    """True if the task completed successfully, False otherwise"""

    logs: str
    """The tail of the task's log, secrets masked"""

    status: str
    """The task's terminal status: Success, Failed, Killed, Task Timed Out, Runtime Error..."""


def signature(secret: str, body: bytes) -> str:
    """The ``X-Taskyard-Signature`` value of ``body`` under ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(secret: str, body: bytes, header: str | None) -> bool:
    """Whether ``header`` (the ``X-Taskyard-Signature`` received) signs ``body`` under ``secret``."""
    return header is not None and hmac.compare_digest(signature(secret, body), header)


def check_url(url: str) -> str:
    """``url`` if it is an absolute http or https URL with a host; ValueError saying why not."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"callback_url {url!r} must be an http:// or https:// URL with a host")
    return url


def check_token(token: str | None) -> str | None:
    """``token`` if it can go in an HTTP header as a bearer token; ValueError (not quoting it) if not."""
    if token is not None and (not token or not all(33 <= ord(c) <= 126 for c in token)):
        raise ValueError("callback_url_token must be printable ASCII without spaces (it is sent as a bearer token)")
    return token


class CallbackAttempt(BaseModel):
    at: datetime
    status_code: int | None = None  # None: no answer (refused, timed out)
    error: str | None = None
    duration_ms: float


class CallbackDelivery(BaseModel):
    id: str  # the X-Taskyard-Delivery header
    state: str  # pending | delivered | failed
    task_status: TaskStatus
    created_at: datetime
    next_at: datetime | None = None  # the next attempt, while pending
    finished_at: datetime | None = None
    attempts: list[CallbackAttempt] = []


class CallbackList(BaseModel):
    url: str | None = None  # None: the task has no callback
    deliveries: list[CallbackDelivery] = []


class SigningSecret(BaseModel):
    secret: str
