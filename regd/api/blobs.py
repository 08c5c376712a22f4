"""Blob and blob-upload handlers (OCI Distribution Spec v1.1, "Pulling blobs",
"Pushing blobs", "Deleting blobs")."""

from __future__ import annotations

import os

from aiohttp import web

from regd.api.direct import LazyBody, request_body
from regd.api.http import byte_range, content_length, content_range, has_body
from regd.api.sendfile import SendfileResponse
from regd.digest import Digest
from regd.errors import ErrorCode, RegistryError
from regd.metadata.uploads import UploadRow
from regd.names import check_name
from regd.services import PRINCIPAL, USER, Services
from regd.storage import fsio


def blob_headers(digest: Digest) -> dict[str, str]:
    return {
        "Docker-Content-Digest": str(digest),
        "ETag": f'"{digest}"',
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "Cache-Control": "max-age=31536000",
    }


async def get_blob(request: web.Request, s: Services, name: str, digest_text: str) -> web.StreamResponse:
    """GET/HEAD /v2/<name>/blobs/<digest>: the bytes, whole or one range (206)."""
    digest = Digest.parse(digest_text)
    size = await s.registry.blob_size(name, digest, confirm=request.method == "HEAD")
    return await blob_response(request, s, digest, size)


async def blob_response(request: web.Request, s: Services, digest: Digest, size: int) -> web.StreamResponse:
    """A stored blob's bytes (sendfile), whole or the request's Range."""
    headers = blob_headers(digest)
    if request.headers.get("If-None-Match") == f'"{digest}"':
        return web.Response(
            status=304, headers={"ETag": headers["ETag"], "Docker-Content-Digest": str(digest)}
        )
    span = byte_range(request.headers.get("Range"), size)
    start, end, status = (0, size - 1, 200) if span is None else (*span, 206)
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
    try:
        fd = await fsio.run(os.open, s.store.path(digest), os.O_RDONLY)
    except FileNotFoundError:
        raise RegistryError(ErrorCode.BLOB_UNKNOWN, f"blob {digest} unknown") from None
    return SendfileResponse(fd, start, end - start + 1, status=status, headers=headers,
                            send=s.config.server.blob_send)


async def delete_blob(request: web.Request, s: Services, name: str, digest_text: str) -> web.StreamResponse:
    digest = Digest.parse(digest_text)
    await s.registry.delete_blob(name, digest)
    return web.Response(status=202, headers={"Docker-Content-Digest": str(digest)})


def _created(name: str, digest: Digest) -> web.Response:
    return web.Response(
        status=201,
        headers={
            "Location": f"/v2/{name}/blobs/{digest}",
            "Docker-Content-Digest": str(digest),
            "Content-Length": "0",
        },
    )


async def start_upload(request: web.Request, s: Services, name: str) -> web.StreamResponse:
    """POST /v2/<name>/blobs/uploads/: a session (202), a monolithic upload with
    ``?digest=`` (201), or a cross-repository mount with ``?mount=&from=`` (201).
    A mount the caller may not read the source of, or of a blob the source lacks, is a
    new upload session (202), the same answer either way."""
    mount, source = request.query.get("mount"), request.query.get("from")
    if mount is not None and source is not None:
        mounted = Digest.parse(mount)
        if source != name:
            check_name(source)
        readable = request[PRINCIPAL].may(source, "pull")
        if readable and await s.registry.mount(name, mounted, source) is not None:
            return _created(name, mounted)
        # Not mountable: fall back to a fresh upload session (spec: 202).
    digest_text = request.query.get("digest")
    digest = Digest.parse(digest_text) if digest_text is not None else None
    # Open sessions are capped per account too; without access control all are "anonymous".
    account = request.get(USER, "") if s.config.auth.enabled else ""
    row = await s.uploads.start(name, account)
    if digest is not None:
        row = await _append(s, row, request, ranged=False)
        await s.uploads.commit(row, digest)
        return _created(name, digest)
    return web.Response(
        status=202, headers={**s.uploads.range_headers(name, row.id, 0), "Content-Length": "0"}
    )


async def upload_status(request: web.Request, s: Services, name: str, upload_id: str) -> web.StreamResponse:
    """GET /v2/<name>/blobs/uploads/<id>: 204 with the Range received so far."""
    row = await s.uploads.get(name, upload_id)
    return web.Response(status=204, headers=s.uploads.range_headers(name, row.id, row.size))


async def patch_upload(request: web.Request, s: Services, name: str, upload_id: str) -> web.StreamResponse:
    """PATCH: a chunk with Content-Range, or the stream of a whole blob without it."""
    row = await s.uploads.get(name, upload_id)
    row = await _append(s, row, request)
    return web.Response(
        status=202, headers={**s.uploads.range_headers(name, row.id, row.size), "Content-Length": "0"}
    )


async def complete_upload(request: web.Request, s: Services, name: str, upload_id: str) -> web.StreamResponse:
    """PUT ?digest=: the optional last chunk, then the commit (201)."""
    row = await s.uploads.get(name, upload_id)
    digest_text = request.query.get("digest")
    if digest_text is None:
        raise RegistryError(ErrorCode.DIGEST_INVALID, "digest query parameter is required")
    digest = Digest.parse(digest_text)
    if has_body(request):
        row = await _append(s, row, request)
    await s.uploads.commit(row, digest)
    return _created(name, digest)


async def _append(s: Services, row: UploadRow, request: web.Request, ranged: bool = True) -> UploadRow:
    """The request's body (a chunk with its Content-Range, or a stream) onto the session."""
    chunk = content_range(request) if ranged else None
    length = content_length(request)
    body = request_body(request)
    try:
        return await s.uploads.append(row, body, chunk, length)
    finally:
        if isinstance(body, LazyBody):
            body.release()


async def cancel_upload(request: web.Request, s: Services, name: str, upload_id: str) -> web.StreamResponse:
    row = await s.uploads.get(name, upload_id)
    await s.uploads.cancel(row)
    return web.Response(status=204)
