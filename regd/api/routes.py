"""The registry API's route table and its dispatcher.

Repository names contain slashes, so ``/v2/`` paths are matched here against a table of
patterns, in order, instead of by aiohttp's router. Each route names the handler, the
methods it answers and the action each method needs on the repository (Harbor's
``v2auth``: GET/HEAD pull, POST/PATCH/PUT push, DELETE delete; except that cancelling
an upload is part of pushing, so that whoever may push can clean up after itself).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from regd.api import blobs, listing, manifests, proxied
from regd.auth import Access
from regd.errors import ErrorCode, RegistryError
from regd.names import check_name, is_valid_name
from regd.services import PRINCIPAL, REPOSITORY, ROUTE, SERVICES, USER, Services

Handler = Callable[..., Awaitable[web.StreamResponse]]

_NAME = r"(?P<name>.+?)"


@dataclass(frozen=True)
class Route:
    name: str
    pattern: re.Pattern[str]
    handlers: dict[str, Handler]
    actions: dict[str, tuple[str, ...]]


_PULL, _PUSH, _DELETE = ("pull",), ("pull", "push"), ("delete",)


def _route(name: str, pattern: str, handlers: dict[str, Handler], delete: tuple[str, ...] = _DELETE) -> Route:
    actions: dict[str, tuple[str, ...]] = {
        method: _PULL if method in ("GET", "HEAD") else delete if method == "DELETE" else _PUSH
        for method in handlers
    }
    return Route(name, re.compile(f"^{pattern}$"), handlers, actions)


ROUTES: list[Route] = [
    _route("base", r"", {"GET": listing.base, "HEAD": listing.base}),
    _route("catalog", r"_catalog", {"GET": listing.catalog}),
    _route("tags", _NAME + r"/tags/list", {"GET": listing.list_tags}),
    _route(
        "manifest",
        _NAME + r"/manifests/(?P<reference>[^/]+)",
        {
            "GET": manifests.get_manifest,
            "HEAD": manifests.get_manifest,
            "PUT": manifests.put_manifest,
            "DELETE": manifests.delete_manifest,
        },
    ),
    _route("upload_start", _NAME + r"/blobs/uploads/?", {"POST": blobs.start_upload}),
    _route(
        "upload",
        _NAME + r"/blobs/uploads/(?P<upload_id>[^/]+)",
        {
            "GET": blobs.upload_status,
            "PATCH": blobs.patch_upload,
            "PUT": blobs.complete_upload,
            "DELETE": blobs.cancel_upload,
        },
        delete=_PUSH,
    ),
    _route(
        "blob",
        _NAME + r"/blobs/(?P<digest_text>[^/]+)",
        {
            "GET": blobs.get_blob,
            "HEAD": blobs.get_blob,
            "DELETE": blobs.delete_blob,
        },
    ),
    _route("referrers", _NAME + r"/referrers/(?P<digest_text>[^/]+)", {"GET": listing.referrers}),
]


def match(path: str) -> tuple[Route, dict[str, str]] | None:
    for route in ROUTES:
        found = route.pattern.match(path)
        if found is not None:
            return route, found.groupdict()
    return None


def needs(route: Route, method: str, params: dict[str, str], query: Any) -> list[Access]:
    """What the request needs to be allowed (the token scopes a client must hold)."""
    name = params.get("name")
    if route.name == "base":
        return []
    if route.name == "catalog":
        return [Access("registry", "catalog", ("*",))]
    assert name is not None
    return [Access("repository", name, route.actions[method])]


def wants(route: Route, params: dict[str, str], query: Any) -> list[Access]:
    """What the request uses only if the caller may: the source repository of a mount.
    A caller who may not read it gets a new upload session instead (OCI spec: a registry
    that cannot mount answers 202), never a 401 loop nor a hint whether the blob is there."""
    source = query.get("from")
    if route.name != "upload_start" or not query.get("mount") or not source:
        return []
    if source == params.get("name") or not is_valid_name(source):
        return []
    return [Access("repository", source, ("pull",))]


async def dispatch(request: web.Request) -> web.StreamResponse:
    path = request.path[len("/v2/") :] if request.path.startswith("/v2/") else ""
    found = match(path)
    if found is None:
        raise RegistryError(ErrorCode.NOT_FOUND, f"no route for {request.path[:200]}")
    route, params = found
    handler = route.handlers.get(request.method)
    if handler is None:
        raise RegistryError(
            ErrorCode.UNSUPPORTED,
            f"{request.method} is not supported on {route.name}",
            headers={"Allow": ", ".join(sorted(route.handlers))},
        )
    if "name" in params:
        check_name(params["name"])
    services: Services = request.app[SERVICES]
    request[ROUTE] = route.name
    if "name" in params:
        request[REPOSITORY] = params["name"]
    principal = await services.authorizer.authorize(
        request, needs(route, request.method, params, request.query), wants(route, params, request.query)
    )
    request[PRINCIPAL] = principal
    if principal.name:
        request[USER] = principal.name
    if "name" in params and (proxy := await services.proxy.project_of(params["name"])) is not None:
        answer = await proxied.dispatch(request, services, proxy, route.name, params)
        if answer is not None:
            return answer
    return await handler(request, services, **params)


def setup(app: web.Application) -> None:
    app.router.add_route("*", "/v2", dispatch)
    app.router.add_route("*", "/v2/{tail:.*}", dispatch)
