"""What every page shares: who is looking (an ``Actor``), the CSRF token for its forms,
rendering a template with the base context, the security headers, errors shown in the
page, paging, and the filters for human sizes and times.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import aiohttp_jinja2
from aiohttp import web

from regd import __version__
from regd.api.caller import actor
from regd.api.session import SAFE_METHODS, check_page_csrf, csrf_token, set_new_cookies
from regd.errors import ErrorCode, RegistryError, code_for_status
from regd.manage import Actor, Management, Page
from regd.numbers import parse_uint
from regd.services import SERVICES, Services

PAGE_SIZE = 15
MAX_PAGE_SIZE = 100
MAX_PAGE = 10**9  # (page - 1) * size stays far inside SQLite's 64-bit OFFSET

# No inline script or style anywhere: everything the pages run is under /static.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def services_of(request: web.Request) -> Services:
    return request.app[SERVICES]


def manage_of(request: web.Request) -> Management:
    return request.app[SERVICES].manage


async def security_headers(request: web.Request, response: web.StreamResponse) -> None:
    """on_response_prepare: the headers of every page (and every other answer, harmless)."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if (response.content_type or "").startswith("text/html"):
        response.headers.setdefault("Content-Security-Policy", CSP)


async def base_context(request: web.Request) -> dict[str, Any]:
    services = services_of(request)
    me = await actor(request)
    external = services.config.external_url
    return {
        "me": me,
        "auth_enabled": services.config.auth.enabled,
        "signed_in": me.authenticated,
        "csrf": await csrf_token(request),
        "version": __version__,
        "registry_host": urlsplit(external).netloc,
        "has_ca": bool(services.config.server.ca_cert) and external.startswith("https://"),
        "path": request.path,
        "query": request.query,
    }


async def render(
    request: web.Request, template: str, context: Mapping[str, Any], status: int = 200
) -> web.Response:
    full = {**await base_context(request), **context}
    response = aiohttp_jinja2.render_template(template, request, full, status=status)
    response.headers["Cache-Control"] = "no-store"
    set_new_cookies(request, response)
    return response


def page(handler: Handler) -> Handler:
    """Wrap a page handler: state-changing requests need the CSRF token (unless they
    carry Basic or bearer credentials), and a ``RegistryError`` is shown in the page."""

    @functools.wraps(handler)
    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            if request.method not in SAFE_METHODS and "Authorization" not in request.headers:
                await check_page_csrf(request)
            return await handler(request)
        except RegistryError as e:
            return await render(request, "error.html", {"error": e}, status=e.status)

    return wrapped


# Errors a form shows next to its fields (the rest are refusals: the error page).
FORM_ERRORS = frozenset({ErrorCode.BAD_REQUEST, ErrorCode.CONFLICT, ErrorCode.NOT_FOUND})

ErrorPage = Callable[[str, int], Awaitable[web.StreamResponse]]


async def or_form_error(action: Awaitable[web.StreamResponse], shown: ErrorPage) -> web.StreamResponse:
    """The answer of ``action``, or the form's page showing what was wrong with it."""
    try:
        return await action
    except RegistryError as e:
        if e.code not in FORM_ERRORS:
            raise
        return await shown(e.message, e.status)


# Paths of the machine interfaces: their errors stay in the JSON envelope.
_NOT_PAGES = ("/v2", "/api/", "/service/", "/metrics", "/static/", "/c/")


@web.middleware
async def html_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """A browser asking for a page that does not exist gets an error page, not JSON."""
    try:
        return await handler(request)
    except web.HTTPException as e:
        wants_page = "text/html" in request.headers.get("Accept", "") and request.method in SAFE_METHODS
        if e.status < 400 or not wants_page or request.path.startswith(_NOT_PAGES):
            raise
        error = RegistryError(
            code_for_status(e.status), f"{e.reason}: there is no page at {request.path[:200]}"
        )
        return await render(request, "error.html", {"error": error}, status=e.status)


def see_other(location: str) -> web.Response:
    """303 to ``location`` (after a form: the browser GETs the page that shows the result)."""
    return web.Response(status=303, headers={"Location": location})


async def form(request: web.Request) -> dict[str, str]:
    data = await request.post()
    return {k: v for k, v in data.items() if isinstance(v, str)}


async def current(request: web.Request) -> Actor:
    return await actor(request)


# -- paging ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Pager:
    page: int
    size: int
    total: int
    path: str
    query: Mapping[str, str]

    @property
    def pages(self) -> int:
        return max(1, -(-self.total // self.size))

    def url(self, page: int) -> str:
        query = {k: v for k, v in self.query.items() if k != "page"}
        if page > 1:
            query["page"] = str(page)
        return self.path + ("?" + urlencode(query) if query else "")

    @property
    def first(self) -> int:
        return 0 if self.total == 0 else (self.page - 1) * self.size + 1

    @property
    def last(self) -> int:
        return min(self.total, self.page * self.size)


def page_of(request: web.Request, name: str = "page") -> Page:
    size = parse_uint(request.query.get("page_size"), MAX_PAGE_SIZE, 1) or PAGE_SIZE
    return Page(parse_uint(request.query.get(name), MAX_PAGE, 1) or 1, size)


def pager(request: web.Request, page: Page, total: int) -> Pager:
    return Pager(page.page, page.size, total, request.path, request.query)


# -- filters ---------------------------------------------------------------------------


def human_size(size: int | None) -> str:
    if size is None:
        return ""
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"


def utc(seconds: float | None) -> str:
    if not seconds:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds))


def ago(seconds: float | None, now: float | None = None) -> str:
    """ "3 minutes ago" (the page shows the exact UTC time on hover)."""
    if not seconds:
        return "never"
    delta = max(0.0, (time.time() if now is None else now) - seconds)
    for unit, length in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if delta >= length:
            count = int(delta // length)
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def platform(fields: Mapping[str, Any] | None) -> str:
    """ "linux/arm64/v8" from an image's details or an index entry's platform ("" if none)."""
    if not fields:
        return ""
    parts = (fields.get("os"), fields.get("architecture"), fields.get("variant"))
    return "/".join(p for p in parts if isinstance(p, str) and p)


FILTERS: dict[str, Callable[..., str]] = {"size": human_size, "utc": utc, "ago": ago, "platform": platform}
