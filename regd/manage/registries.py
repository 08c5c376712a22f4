"""Registry endpoints (Harbor's ``/registries``): the upstreams of proxy-cache projects,
and the proxy-cache side of project creation.

Rules: names are unique (409); ``type`` is one of ``TYPES``; ``url`` is http(s); the
credential is ``{"type": "basic", "access_key", "access_secret"}`` or none (anonymous;
a Bearer challenge from the upstream is then answered with an anonymous token request).
The secret is stored in the metadata database, which regd keeps readable by its own
user only (mode 0600, see ``metadata.db``), and is never returned: ``"*****"``. An
endpoint a proxy project uses cannot be deleted (412). Only system administrators
manage endpoints and create proxy-cache projects.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any
from urllib.parse import urlparse

from regd.errors import ErrorCode, RegistryError
from regd.metadata import registries as rows
from regd.metadata.db import Database
from regd.metadata.registries import Endpoint, EndpointFields
from regd.proxy.service import ProxyService
from regd.proxy.upstream import Failure, Upstream, UpstreamError

TYPES = frozenset({"docker-hub", "harbor", "docker-registry", "github-ghcr", "quay"})
MASK = "*****"
# Project metadata a proxy-cache project keeps (Harbor's proxy-only keys).
PROXY_METADATA_KEYS = frozenset(
    {
        "proxy_speed_kb",
        "max_upstream_conn",
        "proxy_cache_local_on_not_found",
        "proxy_referrer_api",
        "proxy_cache_filter_pattern",
        "proxy_cache_filter_kind",
    }
)


def _text(body: dict[str, Any], key: str, default: str = "", limit: int = 1024) -> str:
    value = body.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str) or len(value) > limit:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"{key} must be a string of at most {limit} characters")
    return value


def _check(fields: EndpointFields) -> EndpointFields:
    if not fields.name.strip():
        raise RegistryError(ErrorCode.BAD_REQUEST, "name is required")
    if fields.type not in TYPES:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"type must be one of {', '.join(sorted(TYPES))}")
    url = urlparse(fields.url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"url must be an http(s) URL, not {fields.url[:200]!r}")
    if fields.credential_type not in ("", "basic"):
        raise RegistryError(ErrorCode.BAD_REQUEST, 'credential.type must be "basic"')
    return replace(fields, url=fields.url.rstrip("/"))


def fields_of(body: dict[str, Any], current: Endpoint | None = None) -> EndpointFields:
    """The endpoint a POST body (or, with ``current``, a PUT body) describes. PUT takes
    Harbor's ``RegistryUpdate`` (flat ``credential_type``, ``access_key``,
    ``access_secret``) as well as POST's ``credential`` object; a secret of ``*****``
    or none keeps the stored one."""
    credential = body.get("credential") or {}
    if not isinstance(credential, dict):
        raise RegistryError(ErrorCode.BAD_REQUEST, "credential must be an object")
    merged = {
        "credential_type": credential.get("type", body.get("credential_type")),
        "access_key": credential.get("access_key", body.get("access_key")),
        "access_secret": credential.get("access_secret", body.get("access_secret")),
    }
    insecure = body.get("insecure", current.insecure if current else False)
    if not isinstance(insecure, bool):
        raise RegistryError(ErrorCode.BAD_REQUEST, "insecure must be true or false")
    old = current
    secret = _text(merged, "access_secret", "", 4096)
    key = _text(merged, "access_key", old.access_key if old else "")
    ctype = _text(merged, "credential_type", old.credential_type if old else ("basic" if key else ""))
    return _check(
        EndpointFields(
            name=_text(body, "name", old.name if old else "", 255),
            type=_text(body, "type", old.type if old else ""),
            url=_text(body, "url", old.url if old else "", 2048),
            credential_type=ctype,
            access_key=key,
            access_secret=old.access_secret if old and secret in ("", MASK) else secret,
            insecure=insecure,
            description=_text(body, "description", old.description if old else ""),
        )
    )


def endpoint_json(endpoint: Endpoint, timestamp: Any) -> dict[str, Any]:
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


async def get(db: Database, registry_id: int) -> Endpoint:
    found = await rows.by_id(db, registry_id)
    if found is None:
        raise RegistryError(ErrorCode.NOT_FOUND, f"registry {registry_id} not found")
    return found


async def find(db: Database, name_or_id: str) -> Endpoint:
    """By id (a number) or by name (the CLI's ``--proxy``)."""
    found = await rows.by_name(db, name_or_id)
    if found is None and name_or_id.isdigit():
        found = await rows.by_id(db, int(name_or_id))
    if found is None:
        raise RegistryError(ErrorCode.NOT_FOUND, f"registry {name_or_id[:100]} not found")
    return found


async def create(db: Database, fields: EndpointFields) -> int:
    async with db.transaction() as conn:
        if await rows.name_taken(conn, fields.name):
            raise RegistryError(ErrorCode.CONFLICT, f"registry {fields.name} already exists")
        return await rows.insert(conn, fields)


async def update(db: Database, registry_id: int, fields: EndpointFields) -> None:
    async with db.transaction() as conn:
        if await rows.name_taken(conn, fields.name, other_than=registry_id):
            raise RegistryError(ErrorCode.CONFLICT, f"registry {fields.name} already exists")
        await rows.update(conn, registry_id, fields)


async def delete(db: Database, registry_id: int) -> None:
    async with db.transaction() as conn:
        users = await rows.projects_using(conn, registry_id)
        if users:
            raise RegistryError(
                ErrorCode.PRECONDITION,
                f"registry {registry_id} is used by proxy-cache project {users[0]}, can not be deleted",
            )
        await rows.delete(conn, registry_id)


async def ping(proxy: ProxyService, endpoint: Endpoint) -> None:
    """Raise BAD_REQUEST unless the endpoint answers ``GET /v2/`` with its credentials."""
    timeouts = proxy.config.proxy
    saved = endpoint.id > 0
    upstream = (
        proxy.upstream(endpoint)
        if saved
        else Upstream(endpoint, timeouts.connect_timeout, timeouts.read_timeout)
    )
    try:
        await upstream.ping()
    except UpstreamError as e:
        what = "unreachable" if e.failure is Failure.DOWN else "refused"
        raise RegistryError(
            ErrorCode.BAD_REQUEST, f"failed to ping registry {endpoint.url}: {what}: {e.message}"
        ) from None
    finally:
        if not saved:
            await upstream.close()


def proxy_metadata(metadata: dict[str, str], raw: dict[str, Any]) -> dict[str, str]:
    """A proxy-cache project's metadata: the proxy keys given, checked; Harbor drops
    ``enable_content_trust`` for proxy projects."""
    result = {k: v for k, v in metadata.items() if k != "enable_content_trust"}
    for key in PROXY_METADATA_KEYS:
        if key not in raw:
            continue
        value = raw[key]
        if not isinstance(value, str):
            raise RegistryError(ErrorCode.BAD_REQUEST, f"metadata.{key} must be a string")
        if key in ("proxy_speed_kb", "max_upstream_conn") and not value.lstrip("-").isdigit():
            raise RegistryError(ErrorCode.BAD_REQUEST, f"metadata.{key} must be an integer (-1: no limit)")
        result[key] = value
    return result
