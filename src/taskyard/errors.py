"""One rooted exception hierarchy, shared by the server and the SDK.

Every error has a stable ``code`` and an HTTP status. The server answers with
``{"error": {"code": ..., "message": ..., "field": ...}}`` and the client raises the same class again.
"""

from __future__ import annotations


class TaskyardError(Exception):
    code = "error"
    http_status = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_dict(self) -> dict:
        body = {"code": self.code, "message": self.message}
        if self.field:
            body["field"] = self.field
        return body


class InvalidInput(TaskyardError, ValueError):
    """A request or a config that can never succeed as given."""

    code = "invalid_input"
    http_status = 422


class ConfigError(InvalidInput):
    """The server configuration is not valid; the message names the file (or variable) and the key."""

    code = "invalid_config"


class Unauthorized(TaskyardError):
    code = "unauthorized"
    http_status = 401


class Forbidden(TaskyardError):
    code = "forbidden"
    http_status = 403


class NotFound(TaskyardError, LookupError):
    code = "not_found"
    http_status = 404


class Conflict(TaskyardError):
    code = "conflict"
    http_status = 409


class IllegalTransition(Conflict):
    code = "illegal_transition"


class TooLarge(TaskyardError):
    code = "too_large"
    http_status = 413


class TaskError(TaskyardError):
    """A task ended without success (raised by helpers that demand success)."""

    code = "task_failed"
    http_status = 400


class Unsupported(TaskyardError, NotImplementedError):
    """A name of the Practicus or Inductiva API that means nothing here; the message says what to use."""

    code = "unsupported"
    http_status = 501


class TimedOut(TaskyardError, TimeoutError):
    """Something waited for did not come in time (a worker that is not ready, say)."""

    code = "timed_out"
    http_status = 504


class ServerUnavailable(TaskyardError, ConnectionError):
    code = "server_unavailable"
    http_status = 503


ERRORS_BY_CODE: dict[str, type[TaskyardError]] = {
    cls.code: cls
    for cls in (
        TaskyardError,
        InvalidInput,
        ConfigError,
        Unauthorized,
        Forbidden,
        NotFound,
        Conflict,
        IllegalTransition,
        TooLarge,
        TaskError,
        Unsupported,
        ServerUnavailable,
    )
}


def error_from_dict(body: dict) -> TaskyardError:
    cls = ERRORS_BY_CODE.get(body.get("code", ""), TaskyardError)
    return cls(body.get("message", "unknown error"), field=body.get("field"))
