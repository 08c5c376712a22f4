"""``/api/v2.0/registries``: the upstream endpoints of proxy-cache projects (list, get,
create, update, delete, ping). System administrators only; the rules are in
``regd.manage.registries``."""

from __future__ import annotations

import dataclasses

from aiohttp import web

from regd.api.harbor.common import (
    PREFIX,
    created,
    json_body,
    ok,
    page_of,
    paged,
    services_of,
    sysadmin,
    timestamp,
)
from regd.api.http import json_response
from regd.errors import ErrorCode, RegistryError
from regd.manage import registries
from regd.metadata import registries as rows
from regd.metadata.registries import Endpoint


def _id(request: web.Request) -> int:
    raw = request.match_info["registry_id"]
    if not raw.isdigit():
        raise RegistryError(ErrorCode.BAD_REQUEST, "registry id must be a positive integer")
    return int(raw)


async def list_registries(request: web.Request) -> web.Response:
    await sysadmin(request)
    page = page_of(request)
    name = request.query.get("name") or request.query.get("q", "").partition("name=")[2].lstrip("~")
    total, found = await rows.page(services_of(request).db, name, page.offset, page.size)
    return paged(request, [registries.endpoint_json(e, timestamp) for e in found], total, page)


async def get_registry(request: web.Request) -> web.Response:
    await sysadmin(request)
    endpoint = await registries.get(services_of(request).db, _id(request))
    return json_response(registries.endpoint_json(endpoint, timestamp))


async def create_registry(request: web.Request) -> web.Response:
    await sysadmin(request)
    fields = registries.fields_of(await json_body(request))
    registry_id = await registries.create(services_of(request).db, fields)
    return created(f"{PREFIX}/registries/{registry_id}")


async def update_registry(request: web.Request) -> web.Response:
    await sysadmin(request)
    db = services_of(request).db
    current = await registries.get(db, _id(request))
    await registries.update(db, current.id, registries.fields_of(await json_body(request), current))
    return ok()


async def delete_registry(request: web.Request) -> web.Response:
    await sysadmin(request)
    db = services_of(request).db
    endpoint = await registries.get(db, _id(request))
    await registries.delete(db, endpoint.id)
    services_of(request).proxy.health.forget(endpoint.id)
    return ok()


async def ping_registry(request: web.Request) -> web.Response:
    """``{"id": n}`` pings a stored endpoint (its fields in the body override, as in
    Harbor); without ``id``, the endpoint the body describes."""
    await sysadmin(request)
    services = services_of(request)
    body = await json_body(request)
    raw_id = body.get("id")
    current: Endpoint | None = None
    if raw_id is not None:
        if not isinstance(raw_id, int) or isinstance(raw_id, bool):
            raise RegistryError(ErrorCode.BAD_REQUEST, "id must be an integer")
        current = await registries.get(services.db, raw_id)
    else:
        body.setdefault("name", "ping")
    fields = registries.fields_of(body, current)
    endpoint = Endpoint(**dataclasses.asdict(fields))
    await registries.ping(services.proxy, endpoint)
    return ok()


def routes(app: web.Application) -> None:
    base = f"{PREFIX}/registries"
    app.router.add_get(base, list_registries)
    app.router.add_post(base, create_registry)
    app.router.add_post(base + "/ping", ping_registry)
    app.router.add_get(base + "/{registry_id}", get_registry)
    app.router.add_put(base + "/{registry_id}", update_registry)
    app.router.add_delete(base + "/{registry_id}", delete_registry)
