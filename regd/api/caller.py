"""Who makes a request, for every front end on HTTP (the management API, the pages):
HTTP Basic credentials (users and robot accounts), else a browser's session cookie
(``api.session``, CSRF-checked for state-changing requests), else anonymous. With
``[auth] enabled = false`` every caller is the system administrator. Looked up once per
request; the ``Actor`` adds the caller's project roles for the management services.
"""

from __future__ import annotations

from aiohttp import web

from regd.api.session import session_account
from regd.auth.accounts import ANONYMOUS, NO_AUTH_ADMIN, Account
from regd.auth.authorizer import basic_credentials
from regd.errors import ErrorCode, RegistryError
from regd.manage import Actor
from regd.services import SERVICES, USER

_CALLER: web.RequestKey[Account] = web.RequestKey("caller", Account)
_ACTOR: web.RequestKey[Actor] = web.RequestKey("actor", Actor)


async def caller(request: web.Request) -> Account:
    """Who is calling (checked once per request)."""
    if _CALLER in request:
        return request[_CALLER]
    services = request.app[SERVICES]
    account = ANONYMOUS
    if not services.config.auth.enabled:
        account = NO_AUTH_ADMIN
    elif (header := request.headers.get("Authorization")) is not None:
        credentials = basic_credentials(header)
        if credentials is None:
            raise RegistryError(ErrorCode.UNAUTHORIZED, "basic authentication required")
        account = await services.accounts.authenticate(*credentials, request.remote or "")
    elif (from_session := await session_account(request)) is not None:
        account = from_session  # a browser's session cookie, CSRF-checked
    request[_CALLER] = account
    if account.name:
        request[USER] = account.name  # for the access log
    return account


async def actor(request: web.Request) -> Actor:
    """The caller with their project roles, for the management services."""
    if _ACTOR not in request:
        request[_ACTOR] = await request.app[SERVICES].manage.actor(await caller(request))
    return request[_ACTOR]
