"""``/api/v2.0/registries``: the upstream endpoints of proxy-cache projects (list, get,
create, update, delete, ping). System administrators only; the rules are
``regd.manage.registries``'s. Here: Harbor's JSON. ``POST`` takes ``credential:
{type, access_key, access_secret}``; ``PUT`` takes it too, or Harbor's flat
``credential_type``, ``access_key``, ``access_secret`` (``RegistryUpdate``); a secret
sent back as ``*****`` keeps the stored one; answers show the secret as ``*****``."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aiohttp import web

from regd.api.harbor.common import (
    PREFIX,
    created,
    json_body,
    manage_of,
    ok,
    page_of,
    paged,
    sysadmin,
    text_field,
    timestamp,
)
from regd.api.http import json_response
from regd.errors import ErrorCode, RegistryError
from regd.manage.registries import MASK
from regd.metadata.registries import Endpoint, EndpointFields


def registry_json(endpoint: Endpoint) -> dict[str, Any]:
    credential: dict[str, Any] = {"type": endpoint.credential_type or "basic"}
    if endpoint.access_key:
        credential["access_key"] = endpoint.access_key
        credential["access_secret"] = MASK
    return {
        "id": endpoint.id,
        "name": endpoint.name,
        "type": endpoint.type,
        "url": endpoint.url,
        "credential": credential,
        "insecure": endpoint.insecure,
        "description": endpoint.description,
        "status": endpoint.status,
        "creation_time": timestamp(endpoint.created_at),
        "update_time": timestamp(endpoint.updated_at),
    }


def fields_of(body: dict[str, Any], current: Endpoint | None = None) -> EndpointFields:
    """The endpoint a body describes; what it leaves out stays as ``current`` has it."""
    credential = body.get("credential") or {}
    if not isinstance(credential, dict):
        raise RegistryError(ErrorCode.BAD_REQUEST, "credential must be an object")
    flat = {
        "credential_type": credential.get("type", body.get("credential_type")),
        "access_key": credential.get("access_key", body.get("access_key")),
        "access_secret": credential.get("access_secret", body.get("access_secret")),
    }
    insecure = body.get("insecure", current.insecure if current else False)
    if not isinstance(insecure, bool):
        raise RegistryError(ErrorCode.BAD_REQUEST, "insecure must be true or false")
    old = asdict(current) if current else {}
    key = text_field(flat, "access_key", old.get("access_key", ""))
    return EndpointFields(
        name=text_field(body, "name", old.get("name", ""), 255),
        type=text_field(body, "type", old.get("type", "")),
        url=text_field(body, "url", old.get("url", ""), 2048),
        credential_type=text_field(
            flat, "credential_type", old.get("credential_type") or ("basic" if key else "")
        ),
        access_key=key,
        access_secret=text_field(flat, "access_secret", "", 4096),
        insecure=insecure,
        description=text_field(body, "description", old.get("description", "")),
    )


def _id(request: web.Request) -> int:
    raw = request.match_info["registry_id"]
    if not raw.isdigit():
        raise RegistryError(ErrorCode.BAD_REQUEST, "registry id must be a positive integer")
    return int(raw)


async def list_registries(request: web.Request) -> web.Response:
    caller = await sysadmin(request)
    page = page_of(request)
    name = request.query.get("name") or request.query.get("q", "").partition("name=")[2].lstrip("~")
    listing = await manage_of(request).registries.listing(caller, page, name)
    return paged(request, [registry_json(e) for e in listing.items], listing.total, page)


async def get_registry(request: web.Request) -> web.Response:
    caller = await sysadmin(request)
    return json_response(registry_json(await manage_of(request).registries.get(caller, _id(request))))


async def create_registry(request: web.Request) -> web.Response:
    caller = await sysadmin(request)
    registry_id = await manage_of(request).registries.create(caller, fields_of(await json_body(request)))
    return created(f"{PREFIX}/registries/{registry_id}")


async def update_registry(request: web.Request) -> web.Response:
    caller = await sysadmin(request)
    service = manage_of(request).registries
    current = await service.get(caller, _id(request))
    await service.update(caller, current, fields_of(await json_body(request), current))
    return ok()


async def delete_registry(request: web.Request) -> web.Response:
    caller = await sysadmin(request)
    service = manage_of(request).registries
    await service.delete(caller, await service.get(caller, _id(request)))
    return ok()


async def ping_registry(request: web.Request) -> web.Response:
    """``{"id": n}`` pings a stored endpoint (the body's fields override it, as in
    Harbor); without ``id``, the endpoint the body describes."""
    caller = await sysadmin(request)
    service = manage_of(request).registries
    body = await json_body(request)
    raw_id = body.get("id")
    current: Endpoint | None = None
    if raw_id is not None:
        if not isinstance(raw_id, int) or isinstance(raw_id, bool):
            raise RegistryError(ErrorCode.BAD_REQUEST, "id must be an integer")
        current = await service.get(caller, raw_id)
    await service.ping(caller, fields_of({"name": "ping", **body}, current), current)
    return ok()


def routes(app: web.Application) -> None:
    base = f"{PREFIX}/registries"
    app.router.add_get(base, list_registries)
    app.router.add_post(base, create_registry)
    app.router.add_post(base + "/ping", ping_registry)
    app.router.add_get(base + "/{registry_id}", get_registry)
    app.router.add_put(base + "/{registry_id}", update_registry)
    app.router.add_delete(base + "/{registry_id}", delete_registry)
