"""The browser session of a request (cookie ``sid``, as Harbor names it) and its CSRF
rule, shared by the management API and the web pages.

A request that carries no ``Authorization`` header but a live session cookie acts as
the session's user. Every state-changing request (not GET, HEAD or OPTIONS) that relies
on the cookie must carry the session's CSRF token, in the ``X-Harbor-CSRF-Token`` (or
``X-CSRF-Token``) header or the ``_csrf`` form field, else 403. Requests with Basic or
bearer credentials are not affected: no browser adds those on its own.

Without a session (anonymous visitors; every visitor when ``[auth] enabled = false``)
the pages' forms carry the value of a ``regd_csrf`` cookie instead (double submit):
another site can make a browser send that cookie but cannot read it to fill the field.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from regd.auth.accounts import Account
from regd.auth.sessions import Session
from regd.errors import ErrorCode, RegistryError
from regd.services import SERVICES

COOKIE = "sid"
CSRF_COOKIE = "regd_csrf"
CSRF_HEADERS = ("X-Harbor-CSRF-Token", "X-CSRF-Token")
CSRF_FIELD = "_csrf"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_FORMS = ("application/x-www-form-urlencoded", "multipart/form-data")

_SESSION: web.RequestKey[Session | None] = web.RequestKey("session")
_NEW_CSRF: web.RequestKey[str] = web.RequestKey("new_csrf", str)


async def session_of(request: web.Request) -> Session | None:
    """The live session of the request's cookie (looked up once per request)."""
    if _SESSION not in request:
        cookie = request.cookies.get(COOKIE, "")
        request[_SESSION] = await request.app[SERVICES].sessions.find(cookie) if cookie else None
    return request[_SESSION]


async def session_account(request: web.Request) -> Account | None:
    """The account of the request's session, CSRF-checked for state-changing requests;
    None without a live session (or when its user is gone)."""
    session = await session_of(request)
    if session is None:
        return None
    if request.method not in SAFE_METHODS:
        await check_csrf(request, session.csrf)
    account = await request.app[SERVICES].accounts.account_named(session.username)
    return account if account.authenticated else None


async def submitted_token(request: web.Request) -> str:
    for header in CSRF_HEADERS:
        if header in request.headers:
            return request.headers[header]
    if request.content_type in _FORMS:
        value = (await request.post()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


async def check_csrf(request: web.Request, expected: str) -> None:
    token = await submitted_token(request)
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise RegistryError(ErrorCode.FORBIDDEN, "CSRF token missing or invalid; reload the page")


async def csrf_token(request: web.Request) -> str:
    """The token the pages put in their forms: the session's, else the double-submit
    cookie's (one is made for this response when the browser has none)."""
    session = await session_of(request)
    if session is not None:
        return session.csrf
    existing = request.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(existing) <= 100:
        return existing
    if _NEW_CSRF not in request:
        request[_NEW_CSRF] = secrets.token_urlsafe(32)
    return request[_NEW_CSRF]


async def check_page_csrf(request: web.Request) -> None:
    """A state-changing page request: the session's token, else the double-submit one."""
    session = await session_of(request)
    expected = session.csrf if session is not None else request.cookies.get(CSRF_COOKIE, "")
    await check_csrf(request, expected)


def secure(request: web.Request) -> bool:
    return request.secure or request.app[SERVICES].config.external_url.startswith("https://")


def set_new_cookies(request: web.Request, response: web.StreamResponse) -> None:
    """Set the double-submit cookie if ``csrf_token`` made one for this response."""
    if _NEW_CSRF in request:
        response.set_cookie(
            CSRF_COOKIE,
            request[_NEW_CSRF],
            path="/",
            httponly=True,
            samesite="Strict",
            secure=secure(request),
        )


def set_session_cookie(request: web.Request, response: web.StreamResponse, value: str) -> None:
    response.set_cookie(COOKIE, value, path="/", httponly=True, samesite="Lax", secure=secure(request))


def clear_session_cookie(request: web.Request, response: web.StreamResponse) -> None:
    response.del_cookie(COOKIE, path="/")
