"""Templates and the small formatting helpers they use; pages are HTML answers of these templates."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from taskyard import __version__
from taskyard.server.db.models import UserRow
from taskyard.server.webui.auth import COOKIE, csrf_value
from taskyard.status import TaskStatus

HERE = Path(__file__).parent
STATIC = HERE / "static"

#: a colour class per status, for the status badges (styled in static/dashboard.css)
TONES = {
    TaskStatus.WAITING_FOR_INPUT: "waiting",
    TaskStatus.IN_QUEUE: "waiting",
    TaskStatus.PREPARING: "busy",
    TaskStatus.IN_PROGRESS: "busy",
    TaskStatus.FINALIZING: "busy",
    TaskStatus.SUCCESS: "good",
    TaskStatus.PENDING_KILL: "warn",
}


def tone(status: TaskStatus | str) -> str:
    status = TaskStatus(status)
    return TONES.get(status, "bad" if status.is_failed() else "waiting")


def flow_tone(alias: str) -> str:
    """A flow run's colour, from its status alias."""
    lowered = alias.lower()
    if lowered == "success":
        return "good"
    if lowered in ("failed", "killed"):
        return "bad"
    return "busy" if lowered in ("running", "killing") else "waiting"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def seconds_text(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def when(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if moment else "—"


def bytes_text(count: int | None) -> str:
    if count is None:
        return "—"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024 or unit == "GiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024  # type: ignore[assignment]
    return ""


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(["html"]))
    env.filters.update(tone=tone, flowtone=flow_tone, seconds=seconds_text, when=when, bytes=bytes_text)
    env.globals.update(version=__version__, statuses=list(TaskStatus))
    return env


ENV = _environment()


def page(request: Request, template: str, user: UserRow | None, status_code: int = 200, **context: Any) -> HTMLResponse:
    """``template`` rendered for ``user``; ``partial=1`` in the query renders only its ``live`` block."""
    csrf = csrf_value(request.cookies[COOKIE]) if user is not None and COOKIE in request.cookies else ""
    values = {"request": request, "user": user, "csrf": csrf, "now": utcnow(), **context}
    chosen = ENV.get_template(template)
    if request.query_params.get("partial") == "1" and "live" in chosen.blocks:
        text = "".join(chosen.blocks["live"](chosen.new_context(values)))
    else:
        text = chosen.render(values)
    headers = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin"}
    return HTMLResponse(text, status_code=status_code, headers=headers)
