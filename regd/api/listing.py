"""Listings: ``/v2/``, the catalog, tags and referrers."""

from __future__ import annotations

from urllib.parse import urlencode

from aiohttp import web

from regd.api.http import json_response, page_args
from regd.digest import Digest
from regd.manifests import OCI_INDEX
from regd.metadata import repositories
from regd.services import Services

# Without ``n``, a list is answered whole up to this many entries.
UNPAGED_LIMIT = 100_000


def _next_link(path: str, n: int, last: str) -> str:
    return f'<{path}?{urlencode({"n": n, "last": last})}>; rel="next"'


def paged(
    request: web.Request, key: str, items: list[str], n: int | None, extra: dict[str, str]
) -> web.Response:
    headers: dict[str, str] = {}
    if n is not None and len(items) == n and items:
        headers["Link"] = _next_link(request.path, n, items[-1])
    return json_response({**extra, key: items}, headers=headers)


async def base(request: web.Request, s: Services) -> web.StreamResponse:
    return json_response({})


async def catalog(request: web.Request, s: Services) -> web.StreamResponse:
    n, last = page_args(request)
    names = [] if n == 0 else await repositories.catalog(s.db, last, n or UNPAGED_LIMIT)
    return paged(request, "repositories", names, n, {})


async def list_tags(request: web.Request, s: Services, name: str) -> web.StreamResponse:
    n, last = page_args(request)
    tags = await s.registry.tags(name, last, n if n is not None else UNPAGED_LIMIT)
    return paged(request, "tags", tags if n != 0 else [], n, {"name": name})


async def referrers(request: web.Request, s: Services, name: str, digest_text: str) -> web.StreamResponse:
    """GET /v2/<name>/referrers/<digest>: an image index of the manifests whose subject
    is <digest>, empty when there are none (spec, "Listing Referrers")."""
    subject = Digest.parse(digest_text)
    artifact_type = request.query.get("artifactType")
    rows = await s.registry.referrers(name, subject, artifact_type)
    manifests = []
    for row in rows:
        entry: dict[str, object] = {"mediaType": row.media_type, "digest": row.digest, "size": row.size}
        if row.artifact_type:
            entry["artifactType"] = row.artifact_type
        if row.annotations:
            entry["annotations"] = row.annotations
        manifests.append(entry)
    headers = {"OCI-Filters-Applied": "artifactType"} if artifact_type is not None else {}
    return json_response(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests},
        headers=headers,
        content_type=OCI_INDEX,
    )
