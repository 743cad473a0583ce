"""An unexpected error becomes one 500 answer in the error model, and the connection stays usable.

Starlette's outermost middleware answers an unhandled exception and then raises it again, for the
server to log; uvicorn then closes the keep-alive connection, so the client's next request on it
fails too. This middleware sits inside it: it logs the error, answers the 500 itself and raises
nothing, unless the answer had already begun (then there is no other way to end it).
"""

from __future__ import annotations

import logging

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("taskyard.server")


class Failsafe:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def sending(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            if started:
                raise
            log.exception("unexpected error on %s %s", scope.get("method"), scope.get("path"))
            await internal_error(exc)(scope, receive, send)


def internal_error(exc: Exception) -> JSONResponse:
    body = {"code": "internal", "message": f"internal error ({type(exc).__name__}); see the server log"}
    return JSONResponse({"error": body}, status_code=500)
