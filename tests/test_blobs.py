"""Blob GET/HEAD/DELETE over the real app."""

from __future__ import annotations

import os

import pytest

from tests.conftest import Client, assert_error, push_blob, sha256


async def test_head_and_get_carry_the_spec_headers(client: Client) -> None:
    data = os.urandom(12345)
    digest = await push_blob(client, "library/app", data)
    for method in ("HEAD", "GET"):
        resp = await client.request(method, f"/v2/library/app/blobs/{digest}")
        assert resp.status == 200
        assert resp.headers["Content-Length"] == "12345"
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.headers["Content-Type"] == "application/octet-stream"
        assert resp.headers["ETag"] == f'"{digest}"'
        assert resp.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
        body = await resp.read()
        assert body == (data if method == "GET" else b"")


async def test_single_range_answers_206_with_content_range(client: Client) -> None:
    data = os.urandom(1000)
    digest = await push_blob(client, "library/app", data)
    cases = {
        "bytes=0-0": (0, 0),
        "bytes=10-19": (10, 19),
        "bytes=990-": (990, 999),
        "bytes=-5": (995, 999),
        "bytes=500-5000": (500, 999),
    }
    for header, (start, end) in cases.items():
        resp = await client.get(f"/v2/library/app/blobs/{digest}", headers={"Range": header})
        assert resp.status == 206, header
        assert resp.headers["Content-Range"] == f"bytes {start}-{end}/1000"
        assert resp.headers["Content-Length"] == str(end - start + 1)
        assert await resp.read() == data[start : end + 1]


async def test_unsatisfiable_range_answers_416_with_size(client: Client) -> None:
    digest = await push_blob(client, "library/app", b"0123456789")
    for header in ("bytes=10-", "bytes=100-200", "bytes=-0"):
        resp = await client.get(f"/v2/library/app/blobs/{digest}", headers={"Range": header})
        await assert_error(resp, 416, "RANGE_INVALID")
        assert resp.headers["Content-Range"] == "bytes */10"


async def test_ignorable_ranges_serve_the_whole_blob(client: Client) -> None:
    digest = await push_blob(client, "library/app", b"0123456789")
    for header in ("bytes=0-1,3-4", "items=0-1", "bytes=5-2"):
        resp = await client.get(f"/v2/library/app/blobs/{digest}", headers={"Range": header})
        assert resp.status == 200
        assert await resp.read() == b"0123456789"


async def test_unknown_blob_is_404_blob_unknown(client: Client) -> None:
    await push_blob(client, "library/app", b"x")
    await assert_error(await client.get(f"/v2/library/app/blobs/{sha256(b'nope')}"), 404, "BLOB_UNKNOWN")
    resp = await client.head(f"/v2/library/app/blobs/{sha256(b'nope')}")
    assert resp.status == 404


async def test_blob_of_another_repository_is_not_served(client: Client) -> None:
    digest = await push_blob(client, "library/a", b"secret")
    await assert_error(await client.get(f"/v2/library/b/blobs/{digest}"), 404, "BLOB_UNKNOWN")


@pytest.mark.parametrize(
    ("bad", "status", "code"),
    [
        ("sha256:zz", 400, "DIGEST_INVALID"),
        ("sha1:" + "a" * 40, 400, "DIGEST_INVALID"),
        # An encoded slash makes more path segments: no route has them, nothing is read.
        ("sha256:..%2F..%2Fregd.db", 404, "NOT_FOUND"),
        ("..%2F..%2Fregd.db", 404, "NOT_FOUND"),
    ],
)
async def test_malformed_digests_are_400_and_traversals_match_no_route(
    client: Client, bad: str, status: int, code: str
) -> None:
    await assert_error(await client.get(f"/v2/library/app/blobs/{bad}"), status, code)


async def test_delete_answers_202_and_unlinks_only_that_repository(client: Client) -> None:
    data = os.urandom(100)
    digest = await push_blob(client, "library/a", data)
    await push_blob(client, "library/b", data)
    resp = await client.delete(f"/v2/library/a/blobs/{digest}")
    assert resp.status == 202
    await assert_error(await client.get(f"/v2/library/a/blobs/{digest}"), 404, "BLOB_UNKNOWN")
    resp = await client.get(f"/v2/library/b/blobs/{digest}")
    assert resp.status == 200 and await resp.read() == data
    await assert_error(await client.delete(f"/v2/library/a/blobs/{digest}"), 404, "BLOB_UNKNOWN")


async def test_if_none_match_answers_304(client: Client) -> None:
    digest = await push_blob(client, "library/app", b"cached")
    resp = await client.get(f"/v2/library/app/blobs/{digest}", headers={"If-None-Match": f'"{digest}"'})
    assert resp.status == 304
