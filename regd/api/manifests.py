"""Manifest handlers (OCI Distribution Spec v1.1, "Pulling manifests", "Pushing
manifests", "Deleting manifests")."""

from __future__ import annotations

from aiohttp import web

from regd.digest import Digest
from regd.errors import ErrorCode, RegistryError
from regd.registry import StoredManifest
from regd.services import PRINCIPAL, Services

_ANY = {"*/*", "application/*", "application/json"}
_SIGNERS = ("cosign", "notation")


def _accepts(request: web.Request, media_type: str) -> bool:
    """Does the request's Accept list (if any) admit ``media_type``?"""
    offered = [media_type.lower() for media_type in accepted(request)]
    return not offered or media_type in offered or any(o in _ANY for o in offered)


def _signer(request: web.Request, name: str) -> bool:
    """Harbor's exemption from content trust: a signer (User-Agent cosign or notation)
    whose credentials may push to the repository reads the manifest it is to sign."""
    agent = request.headers.get("User-Agent", "").lower()
    principal = request.get(PRINCIPAL)
    return principal is not None and any(s in agent for s in _SIGNERS) and principal.may(name, "push")


async def get_manifest(request: web.Request, s: Services, name: str, reference: str) -> web.StreamResponse:
    return await manifest_response(
        request, s, name, await s.registry.get_manifest(name, reference), reference
    )


def accepted(request: web.Request) -> list[str]:
    """The media types of the request's Accept headers, as given."""
    return [
        part.split(";", 1)[0].strip()
        for header in request.headers.getall("Accept", [])
        for part in header.split(",")
        if part.strip()
    ]


async def manifest_response(
    request: web.Request, s: Services, name: str, stored: StoredManifest, reference: str
) -> web.StreamResponse:
    """The manifest ``reference`` named, as the request accepts it; a GET is a pull."""
    row = stored.row
    # Content trust (regd/trust/service.py): 412 PROJECTPOLICYVIOLATION for an image the
    # project's policy refuses; GET and HEAD only, before anything else is answered.
    await s.trust.check_pull(name, row, _signer(request, name))
    if not _accepts(request, row.media_type):
        raise RegistryError(
            ErrorCode.MANIFEST_UNKNOWN,
            f"manifest is {row.media_type}, which the Accept header does not admit",
        )
    headers = {"Docker-Content-Digest": row.digest, "ETag": f'"{row.digest}"'}
    if request.headers.get("If-None-Match") == f'"{row.digest}"':
        return web.Response(status=304, headers=headers)
    if request.method == "HEAD":
        headers["Content-Length"] = str(row.size)
        headers["Content-Type"] = row.media_type
        return web.Response(status=200, headers=headers)
    # A pull, as Harbor counts it: a GET that answers the manifest (regd/pulls.py).
    s.pulls.record(row, None if Digest.is_digest(reference) else reference)
    return web.Response(body=stored.data, headers={**headers, "Content-Type": row.media_type})


async def _read_limited(request: web.Request, limit: int) -> bytes:
    declared = request.content_length
    if declared is not None and declared > limit:
        raise RegistryError(
            ErrorCode.REQUEST_ENTITY_TOO_LARGE, f"manifest of {declared} bytes exceeds {limit}"
        )
    chunks: list[bytes] = []
    total = 0
    while chunk := await request.content.readany():
        total += len(chunk)
        if total > limit:
            raise RegistryError(ErrorCode.REQUEST_ENTITY_TOO_LARGE, f"manifest exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def put_manifest(request: web.Request, s: Services, name: str, reference: str) -> web.StreamResponse:
    """PUT by tag, or by digest with optional ``?tag=`` parameters (each tag set is
    named back in ``OCI-Tag``; a client that gets none pushes the tags one by one)."""
    data = await _read_limited(request, s.config.uploads.max_manifest_size)
    tags = request.query.getall("tag", []) if Digest.is_digest(reference) else []
    content_type = request.headers.get("Content-Type")
    manifest = await s.registry.put_manifest(name, reference, data, content_type, tags)
    headers = {
        "Location": f"/v2/{name}/manifests/{manifest.digest}",
        "Docker-Content-Digest": str(manifest.digest),
        "Content-Length": "0",
    }
    if tags:
        headers["OCI-Tag"] = ", ".join(dict.fromkeys(tags))  # RFC 9110 §5.3: a list
    if manifest.subject is not None:
        # Spec: "Pushing Manifests with Subject" -- tells the client referrers are indexed.
        headers["OCI-Subject"] = str(manifest.subject.digest)
    return web.Response(status=201, headers=headers)


async def delete_manifest(request: web.Request, s: Services, name: str, reference: str) -> web.StreamResponse:
    await s.registry.delete_manifest(name, reference)
    return web.Response(status=202)
