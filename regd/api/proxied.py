"""``/v2`` requests to proxy-cache projects (the rules are in ``regd.proxy.service``).

The dispatcher (``routes.dispatch``) sends a request here, after authorization, when
the repository's project has a ``registry_id``. Pulls (manifests, blobs, tag lists) go
through the proxy service; pushes are refused with Harbor's 403 ``DENIED``; the rest
(deletes, referrers) is answered by the ordinary handlers from the cache.
"""

from __future__ import annotations

from aiohttp import web

from regd import metrics
from regd.api.blobs import blob_headers, blob_response
from regd.api.http import page_args
from regd.api.listing import UNPAGED_LIMIT, paged
from regd.api.manifests import accepted, manifest_response
from regd.api.tee import TeeResponse
from regd.digest import Digest
from regd.errors import proxy_push_denied
from regd.proxy.service import Outcome, ProxyProject
from regd.services import PROXY_CACHE, Services

PUSH_METHODS = frozenset({"POST", "PATCH", "PUT"})


def _library_redirect(request: web.Request, pp: ProxyProject, name: str) -> web.StreamResponse:
    """Docker Hub's one-part names live under ``library/`` (Harbor answers 301 too)."""
    rest = request.path[len(f"/v2/{name}") :]
    location = f"/v2/{pp.name}/library/{pp.upstream_name(name)}{rest}"
    if request.query_string:
        location += "?" + request.query_string
    return web.Response(status=301, headers={"Location": location})


def _note(request: web.Request, kind: str, outcome: Outcome) -> None:
    request[PROXY_CACHE] = outcome.value
    (metrics.PROXY_HITS if outcome is Outcome.HIT else metrics.PROXY_MISSES).labels(kind).inc()


async def dispatch(
    request: web.Request, s: Services, pp: ProxyProject, route: str, params: dict[str, str]
) -> web.StreamResponse | None:
    """The answer for a proxy-cache project, or None for the ordinary handler's."""
    if request.method in PUSH_METHODS:
        raise proxy_push_denied(pp.name)
    name = params.get("name", "")
    pulls = {"manifest", "blob", "tags"}
    if route in pulls and pp.needs_library_prefix(name):
        return _library_redirect(request, pp, name)
    if route == "manifest" and request.method in ("GET", "HEAD"):
        return await get_manifest(request, s, pp, name, params["reference"])
    if route == "blob" and request.method in ("GET", "HEAD"):
        return await get_blob(request, s, pp, name, params["digest_text"])
    if route == "tags":
        return await list_tags(request, s, pp, name)
    return None


async def get_manifest(
    request: web.Request, s: Services, pp: ProxyProject, name: str, reference: str
) -> web.StreamResponse:
    stored, outcome = await s.proxy.manifest(pp, name, reference, accepted(request))
    _note(request, "manifest", outcome)
    return await manifest_response(request, s, name, stored, reference)


async def get_blob(
    request: web.Request, s: Services, pp: ProxyProject, name: str, digest_text: str
) -> web.StreamResponse:
    digest = Digest.parse(digest_text)
    head = request.method == "HEAD"
    answer = await s.proxy.blob(pp, name, digest, head)
    _note(request, "blob", answer.outcome)
    if answer.fetch is None and answer.outcome is Outcome.HIT:
        return await blob_response(request, s, digest, answer.size)
    headers = blob_headers(digest)
    if answer.fetch is None:  # HEAD of a blob the cache lacks: the upstream's answer
        if answer.size >= 0:
            headers["Content-Length"] = str(answer.size)
        return web.Response(status=200, headers=headers)
    await answer.fetch.started()
    return TeeResponse(answer.fetch, s.store.path(digest), headers=headers,
                       send=s.config.server.blob_send)


async def list_tags(request: web.Request, s: Services, pp: ProxyProject, name: str) -> web.StreamResponse:
    n, last = page_args(request)
    tags = [t for t in await s.proxy.tags(pp, name) if t > last] if n != 0 else []
    limit = n if n is not None else UNPAGED_LIMIT
    return paged(request, "tags", tags[:limit], n, {"name": name})
