"""Who is calling a page: the ``Authorization: Bearer`` header, else the login cookie; CSRF for actions.

The cookie holds the API token the person logged in with (HttpOnly, SameSite=Strict). Every action
(a POST) made with the cookie must carry the form field ``csrf``, an HMAC of that token, which only
pages of this site can read; a request with the bearer header needs none, since a browser never
adds that header by itself.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from urllib.parse import parse_qs

from fastapi import Request

from taskyard.errors import Forbidden, Unauthorized
from taskyard.server.db.models import UserRow
from taskyard.server.plane import Plane
from taskyard.server.services import users as user_service

COOKIE = "taskyard_session"
LOGIN_COOKIE = "taskyard_login"  # the login form's own CSRF value, before there is a session


class LoginRequired(Exception):
    """A page was asked for without a valid token: the visitor is sent to the login page."""


def header_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def request_token(request: Request) -> str | None:
    return header_token(request) or request.cookies.get(COOKIE) or None


async def find_user(plane: Plane, token: str) -> UserRow | None:
    """The user holding ``token``, or None; known tokens are cached as the API caches them."""
    try:
        user = plane.tokens.get(token)
        if user is None:
            user = await plane.run(lambda session: user_service.authenticate(session, token))
            plane.tokens.put(token, user)
    except Unauthorized:
        return None
    return user


async def page_user(request: Request) -> UserRow:
    """The calling user; :class:`LoginRequired` for a visitor (or a token no longer valid)."""
    token = request_token(request)
    user = await find_user(request.app.state.plane, token) if token else None
    if user is None:
        raise LoginRequired()
    return user


def csrf_value(token: str) -> str:
    return hmac.new(token.encode(), b"taskyard-dashboard-csrf", hashlib.sha256).hexdigest()


async def form(request: Request) -> dict[str, str]:
    """A urlencoded form's fields, the first value of each."""
    fields = parse_qs((await request.body()).decode("utf-8", "replace"), keep_blank_values=True)
    return {key: values[0] for key, values in fields.items()}


async def action_user(request: Request) -> UserRow:
    """The user making an action (a POST): as :func:`page_user`, and refused without a good CSRF value."""
    user = await page_user(request)
    if header_token(request) is None:
        given = (await form(request)).get("csrf", "")
        if not hmac.compare_digest(given, csrf_value(request.cookies.get(COOKIE, ""))):
            raise Forbidden("this form is out of date or was not sent from this site (CSRF check); reload the page")
    return user


def new_login_value() -> str:
    return secrets.token_urlsafe(24)
