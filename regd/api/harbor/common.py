"""What every management-API handler shares: who is calling (``api.caller``: Basic, a
session cookie, or anonymous; an ``Actor`` for the ``regd.manage`` services, which hold
the rules and permission checks), the project of the path, pagination (``page``,
``page_size`` up to 100, ``X-Total-Count``, ``Link``), JSON bodies, Harbor's time format.

Refusals follow Harbor: 401 ``UNAUTHORIZED`` for anonymous callers, 403 ``FORBIDDEN``
for authenticated ones; errors use the one envelope ``{"errors":[{"code","message"}]}``.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import urlencode

import orjson
from aiohttp import web

from regd.api.caller import actor, caller
from regd.api.http import json_response
from regd.auth.roles import Permission
from regd.errors import ErrorCode, RegistryError
from regd.manage import Actor, Management, Page, ProjectAccess
from regd.metadata.projects import Project
from regd.numbers import parse_uint
from regd.services import SERVICES, Services

__all__ = ["actor", "caller"]  # re-exported for the handlers

PREFIX = "/api/v2.0"
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 10
# (page - 1) * page_size must stay far inside SQLite's 64-bit OFFSET.
MAX_PAGE = 10**9

def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]


def manage_of(request: web.Request) -> Management:
    return request.app[SERVICES].manage


async def logged_in(request: web.Request) -> Actor:
    found = await actor(request)
    found.require_login()
    return found


async def sysadmin(request: web.Request) -> Actor:
    found = await actor(request)
    found.require_admin()
    return found


def by_name(request: web.Request) -> bool:
    """``{project_name_or_id}``: a number is an id unless ``X-Is-Resource-Name: true``."""
    return request.headers.get("X-Is-Resource-Name", "").lower() == "true"


async def find_project(request: web.Request, name_or_id: str) -> Project:
    return await manage_of(request).projects.find(name_or_id, by_name(request))


async def project_access(
    request: web.Request, permission: Permission, name_or_id: str | None = None
) -> ProjectAccess:
    """The project of the path (or ``name_or_id``), if the caller holds ``permission`` on it."""
    return await manage_of(request).projects.access(
        await actor(request), name_or_id or request.match_info["project"], permission, by_name(request)
    )


# -- pagination --------------------------------------------------------------------


def page_of(request: web.Request) -> Page:
    page = _positive(request, "page", 1, MAX_PAGE)
    size = _positive(request, "page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
    return Page(page, size)


def _positive(request: web.Request, name: str, default: int, maximum: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    value = parse_uint(raw, maximum, minimum=1)
    if value is None:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"{name} must be an integer from 1 to {maximum}")
    return value


def paged(request: web.Request, items: list[Any], total: int, page: Page) -> web.Response:
    """A list response with Harbor's ``X-Total-Count`` and ``Link`` headers."""
    headers = {"X-Total-Count": str(total)}
    links = []
    if page.page > 1:
        links.append(_link(request, page.page - 1, page.size, "prev"))
    if page.offset + len(items) < total:
        links.append(_link(request, page.page + 1, page.size, "next"))
    if links:
        headers["Link"] = " , ".join(links)
    return json_response(items, headers=headers)


def _link(request: web.Request, page: int, size: int, rel: str) -> str:
    query = {k: v for k, v in request.query.items() if k not in ("page", "page_size")}
    query.update(page=str(page), page_size=str(size))
    return f'<{request.path}?{urlencode(query)}>; rel="{rel}"'


def query_terms(request: web.Request) -> dict[str, str]:
    """Harbor's ``q`` (``k=v,k=~v``) as key -> value; a fuzzy term keeps its ``~``."""
    terms: dict[str, str] = {}
    for part in request.query.get("q", "").split(","):
        key, sep, value = part.partition("=")
        if sep and key.strip():
            terms[key.strip()] = value.strip()
    return terms


# -- bodies and times ----------------------------------------------------------------


async def json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        raise RegistryError(ErrorCode.BAD_REQUEST, "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise RegistryError(ErrorCode.BAD_REQUEST, "the request body must be a JSON object")
    return body


def text_field(body: dict[str, Any], name: str, default: str = "", limit: int = 1024) -> str:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > limit:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"{name} must be a string of at most {limit} characters")
    return value


def timestamp(seconds: float | None) -> str | None:
    """Harbor's times: RFC 3339, UTC, milliseconds."""
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds * 1000) % 1000:03d}Z"


def created(location: str, body: Any = None) -> web.Response:
    if body is None:
        return web.Response(status=201, headers={"Location": location})
    return json_response(body, status=201, headers={"Location": location})


def ok() -> web.Response:
    return web.Response(status=200)
