"""A chunked blob upload survives a restart of the registry between two chunks.

Plain HTTP, following the OCI distribution spec, "Pushing a blob in chunks": POST opens
the upload, each PATCH carries ``Content-Range: <start>-<end>`` (inclusive), GET on the
upload URL reports progress as ``Range: 0-<end>`` with 204, and PUT ``?digest=`` closes it.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message

import pytest

from .daemons import ServerFactory

pytestmark = pytest.mark.e2e

HTTP_TIMEOUT = 30


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    body: bytes

    def __repr__(self) -> str:  # what an assertion shows: never the whole blob
        return f"Response({self.status}, {dict(self.headers)}, {self.body[:300]!r})"


def request(method: str, url: str, body: bytes = b"", headers: dict[str, str] | None = None) -> Response:
    """One HTTP request; 4xx and 5xx are returned, not raised, so tests can assert on them."""
    # No body means data=None: urllib would add a form Content-Type to an empty one.
    req = urllib.request.Request(url, data=body or None, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as response:
            return Response(response.status, response.headers, response.read())
    except urllib.error.HTTPError as error:
        with error:
            return Response(error.code, error.headers, error.read())


def with_query(url: str, **params: str) -> str:
    separator = "&" if urllib.parse.urlsplit(url).query else "?"
    return f"{url}{separator}{urllib.parse.urlencode(params)}"


def patch_chunk(url: str, chunk: bytes, start: int) -> Response:
    return request(
        "PATCH",
        url,
        chunk,
        {
            "Content-Type": "application/octet-stream",
            "Content-Range": f"{start}-{start + len(chunk) - 1}",
            "Content-Length": str(len(chunk)),
        },
    )


def test_upload_survives_a_restart_between_chunks(regd_server: ServerFactory) -> None:
    server = regd_server()  # its own: restarting the shared one would disturb other tests
    blob = os.urandom(5 * 1024 * 1024 // 2)
    first = 1024 * 1024 + 17
    digest = f"sha256:{hashlib.sha256(blob).hexdigest()}"

    started = request("POST", f"{server.url}/v2/e2e/restart/blobs/uploads/")
    assert started.status == 202, started
    location = urllib.parse.urljoin(server.url, started.headers["Location"])
    patched = patch_chunk(location, blob[:first], 0)
    assert (patched.status, patched.headers["Range"]) == (202, f"0-{first - 1}"), patched
    location = urllib.parse.urljoin(server.url, patched.headers["Location"])

    server.restart()

    status = request("GET", location)
    assert (status.status, status.headers["Range"]) == (204, f"0-{first - 1}"), status
    location = urllib.parse.urljoin(server.url, status.headers["Location"] or location)
    patched = patch_chunk(location, blob[first:], first)
    assert (patched.status, patched.headers["Range"]) == (202, f"0-{len(blob) - 1}"), patched
    location = urllib.parse.urljoin(server.url, patched.headers["Location"])
    completed = request("PUT", with_query(location, digest=digest))
    assert completed.status == 201, completed
    assert completed.headers["Docker-Content-Digest"] == digest

    fetched = request("GET", f"{server.url}/v2/e2e/restart/blobs/{digest}")
    assert fetched.status == 200, fetched
    assert hashlib.sha256(fetched.body).hexdigest() == digest.removeprefix("sha256:")
