"""The token service at ``/service/token`` (Docker token specification; Harbor's
``core/service/token``), where clients trade credentials for a bearer token.

- ``GET``: optional Basic credentials, ``scope`` (repeated or space-separated),
  ``service``, ``account``, ``client_id``, ``offline_token``. Anonymous callers get a
  token too (public projects grant them ``pull``), but only for some scope.
- ``POST``: the OAuth2 form containerd sends first (``grant_type=password``,
  ``username``, ``password``, ``service``, ``scope``, ``client_id``). regd issues no
  refresh tokens, so ``grant_type=refresh_token`` is refused with 400.

Both answer ``{"token", "access_token", "expires_in", "issued_at"}``; the token carries
exactly the actions the account holds on each requested resource.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from multidict import MultiDictProxy

from regd.api.http import json_response
from regd.auth import Access
from regd.auth.accounts import ANONYMOUS, Account
from regd.auth.authorizer import basic_credentials
from regd.auth.scopes import parse_scopes
from regd.errors import ErrorCode, RegistryError
from regd.services import SERVICES, USER, Services

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _check_service(services: Services, service: str | None) -> None:
    if service is not None and service != services.config.auth.service:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"invalid service: {service[:100]}")


async def _issue(request: web.Request, account: Account, scopes: list[Access]) -> web.Response:
    services = request.app[SERVICES]
    if account.name:
        request[USER] = account.name  # for the access log
    granted = await services.accounts.grant(account, scopes)
    issued = services.accounts.issuer.issue(account.name, granted, mark=account.mark)
    return json_response(issued.body(), headers=_NO_STORE)


async def get_token(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    _check_service(services, request.query.get("service"))
    scopes = parse_scopes(request.query.getall("scope", []))
    header = request.headers.get("Authorization")
    if header is None:
        if not scopes:
            raise RegistryError(ErrorCode.UNAUTHORIZED, "credentials or a scope are required")
        return await _issue(request, ANONYMOUS, scopes)
    credentials = basic_credentials(header)
    if credentials is None:
        raise RegistryError(ErrorCode.UNAUTHORIZED, "basic credentials required")
    account = await services.accounts.authenticate(*credentials, request.remote or "")
    return await _issue(request, account, scopes)


async def post_token(request: web.Request) -> web.Response:
    services = request.app[SERVICES]
    try:
        form = await request.post()
    except ValueError:  # a malformed multipart or urlencoded body
        raise RegistryError(ErrorCode.BAD_REQUEST, "malformed form body") from None
    _check_service(services, _field(form, "service"))
    grant_type = _field(form, "grant_type")
    if grant_type != "password":
        raise RegistryError(ErrorCode.BAD_REQUEST, f"unsupported grant_type: {(grant_type or '')[:50]}")
    username, password = _field(form, "username"), _field(form, "password")
    if not username or password is None:
        raise RegistryError(ErrorCode.BAD_REQUEST, "username and password are required")
    account = await services.accounts.authenticate(username, password, request.remote or "")
    scope = _field(form, "scope") or ""
    return await _issue(request, account, parse_scopes([scope]))


def _field(form: MultiDictProxy[Any], name: str) -> str | None:
    value = form.get(name)
    return value if isinstance(value, str) else None


def setup(app: web.Application) -> None:
    app.router.add_get("/service/token", get_token)
    app.router.add_post("/service/token", post_token)
