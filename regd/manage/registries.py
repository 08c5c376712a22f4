"""Registry endpoints (Harbor's ``/registries``): the upstreams of proxy-cache projects,
and the proxy-cache side of project creation.

Rules: names are unique (409); ``type`` is one of ``REGISTRY_TYPES``; ``url`` is http(s); the
credential is ``{"type": "basic", "access_key", "access_secret"}`` or none (anonymous;
a Bearer challenge from the upstream is then answered with an anonymous token request).
The secret is stored in the metadata database, which regd keeps readable by its own
user only (mode 0600, see ``metadata.db``), and is never returned: ``"*****"``. An
endpoint a proxy project uses cannot be deleted (412). Only system administrators
manage endpoints and create proxy-cache projects.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from urllib.parse import urlparse

from regd.config import Config
from regd.errors import ErrorCode, RegistryError
from regd.manage.actor import Actor
from regd.manage.paging import Listing, Page
from regd.metadata import registries as rows
from regd.metadata.db import Database
from regd.metadata.registries import REGISTRY_TYPES, Endpoint, EndpointFields
from regd.proxy.upstream import Failure, Upstream, UpstreamError

MASK = "*****"


def check(fields: EndpointFields) -> EndpointFields:
    """The fields, valid (BAD_REQUEST naming what is not), the URL without a trailing /."""
    if not fields.name.strip():
        raise RegistryError(ErrorCode.BAD_REQUEST, "name is required")
    if fields.type not in REGISTRY_TYPES:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"type must be one of {', '.join(sorted(REGISTRY_TYPES))}")
    url = urlparse(fields.url)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise RegistryError(ErrorCode.BAD_REQUEST, f"url must be an http(s) URL, not {fields.url[:200]!r}")
    if fields.credential_type not in ("", "basic"):
        raise RegistryError(ErrorCode.BAD_REQUEST, 'credential.type must be "basic"')
    return replace(fields, url=fields.url.rstrip("/"))


def _keep_secret(fields: EndpointFields, stored: Endpoint | None) -> EndpointFields:
    """An ``access_secret`` of ``*****`` or "" for the stored user keeps the stored one."""
    if stored is not None and fields.access_secret in ("", MASK) and fields.access_key == stored.access_key:
        return replace(fields, access_secret=stored.access_secret)
    return fields


class RegistryService:
    def __init__(self, db: Database, config: Config) -> None:
        self.db = db
        self.config = config

    async def listing(self, actor: Actor, page: Page, name: str = "") -> Listing[Endpoint]:
        actor.require_admin()
        total, found = await rows.page(self.db, name, page.offset, page.size)
        return Listing(total, found)

    async def get(self, actor: Actor, registry_id: int) -> Endpoint:
        actor.require_admin()
        found = await rows.by_id(self.db, registry_id)
        if found is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"registry {registry_id} not found")
        return found

    async def find(self, actor: Actor, name_or_id: str) -> Endpoint:
        """By name, or by id (a number): the CLI's ``--proxy``."""
        actor.require_admin()
        found = await rows.by_name(self.db, name_or_id)
        if found is None and name_or_id.isdigit():
            found = await rows.by_id(self.db, int(name_or_id))
        if found is None:
            raise RegistryError(ErrorCode.NOT_FOUND, f"registry {name_or_id[:100]} not found")
        return found

    async def create(self, actor: Actor, fields: EndpointFields) -> int:
        actor.require_admin()
        async with self.db.transaction() as conn:
            if await rows.name_taken(conn, fields.name):
                raise RegistryError(ErrorCode.CONFLICT, f"registry {fields.name} already exists")
            return await rows.insert(conn, check(fields))

    async def update(self, actor: Actor, endpoint: Endpoint, fields: EndpointFields) -> None:
        """New fields; an ``access_secret`` of ``*****`` or "" keeps the stored one."""
        actor.require_admin()
        fields = check(_keep_secret(fields, endpoint))
        async with self.db.transaction() as conn:
            if await rows.name_taken(conn, fields.name, other_than=endpoint.id):
                raise RegistryError(ErrorCode.CONFLICT, f"registry {fields.name} already exists")
            await rows.update(conn, endpoint.id, fields)

    async def delete(self, actor: Actor, endpoint: Endpoint) -> None:
        actor.require_admin()
        async with self.db.transaction() as conn:
            users = await rows.projects_using(conn, endpoint.id)
            if users:
                raise RegistryError(
                    ErrorCode.PRECONDITION,
                    f"registry {endpoint.id} is used by proxy-cache project {users[0]}, can not be deleted",
                )
            await rows.delete(conn, endpoint.id)

    async def ping(self, actor: Actor, fields: EndpointFields, stored: Endpoint | None = None) -> None:
        """BAD_REQUEST unless the endpoint answers ``GET /v2/`` with its credentials
        (``stored``'s secret when ``fields`` has none for the same user)."""
        actor.require_admin()
        fields = check(_keep_secret(fields, stored))
        timeouts = self.config.proxy
        upstream = Upstream(Endpoint(**asdict(fields)), timeouts.connect_timeout, timeouts.read_timeout)
        try:
            await upstream.ping()
        except UpstreamError as e:
            what = "unreachable" if e.failure is Failure.DOWN else "refused"
            raise RegistryError(
                ErrorCode.BAD_REQUEST, f"failed to ping registry {fields.url}: {what}: {e.message}"
            ) from None
        finally:
            await upstream.close()
