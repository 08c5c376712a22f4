"""Signing in and out: the "Sign in" page, and Harbor's own endpoints ``POST /c/login``
(form fields ``principal`` and ``password``) and ``GET /c/log_out``.

``/c/login`` checks the password behind the API's login throttle (``Accounts``), starts a
server-side session and sets its cookie ``sid`` (HttpOnly, SameSite=Lax, Secure under
HTTPS). It answers 200 as Harbor does, or, when the form names a page to go back to
(``next``, as the Sign in form does), a redirect there; a wrong password is 401, shown
in the page for the form. Robot accounts cannot sign in (as in Harbor).
"""

from __future__ import annotations

from aiohttp import web

from regd.api.session import (
    COOKIE,
    check_csrf,
    clear_session_cookie,
    session_of,
    set_session_cookie,
)
from regd.auth.accounts import Kind
from regd.errors import ErrorCode, RegistryError
from regd.web.render import form, page, render, see_other, services_of


def _next(raw: str) -> str:
    """Only a path of this site (no ``//host`` and no scheme) is a place to go back to."""
    return raw if raw.startswith("/") and not raw.startswith("//") and "\\" not in raw else "/"


async def sign_in_page(request: web.Request) -> web.StreamResponse:
    return await render(request, "sign_in.html", {"next": _next(request.query.get("next", "/"))})


async def login(request: web.Request) -> web.StreamResponse:
    """Harbor's ``POST /c/login``."""
    services = services_of(request)
    fields = await form(request)
    wants_page = "next" in fields
    try:
        session = await session_of(request)
        if session is not None:  # signed in already: no other site may swap the session
            await check_csrf(request, session.csrf)
        if not services.config.auth.enabled:
            raise RegistryError(
                ErrorCode.BAD_REQUEST, "access control is off: there is nothing to sign in to"
            )
        principal, password = fields.get("principal", ""), fields.get("password", "")
        account = await services.accounts.authenticate(principal, password, request.remote or "")
        if account.kind is not Kind.USER:
            raise RegistryError(ErrorCode.FORBIDDEN, "robot accounts cannot sign in to the web interface")
    except RegistryError as e:
        if not wants_page:
            return web.Response(status=e.status, text=e.message + "\n", headers=e.headers)
        context = {
            "next": _next(fields.get("next", "/")),
            "error": e.message,
            "principal": fields.get("principal"),
        }
        return await render(request, "sign_in.html", context, status=e.status)
    old = request.cookies.get(COOKIE)
    if old:
        await services.sessions.end(old)
    cookie, _ = await services.sessions.start(account.id)
    response = see_other(_next(fields["next"])) if wants_page else web.Response(status=200)
    set_session_cookie(request, response, cookie)
    return response


async def log_out(request: web.Request) -> web.StreamResponse:
    """Harbor's ``GET /c/log_out``: ends the session; a browser goes back to ``/``."""
    cookie = request.cookies.get(COOKIE)
    if cookie:
        await services_of(request).sessions.end(cookie)
    wants_page = "text/html" in request.headers.get("Accept", "")
    response = see_other("/") if wants_page else web.Response(status=200)
    clear_session_cookie(request, response)
    return response


def routes(app: web.Application, pages: bool) -> None:
    app.router.add_post("/c/login", login)
    app.router.add_get("/c/log_out", log_out)
    if pages:
        app.router.add_get("/sign-in", page(sign_in_page))
