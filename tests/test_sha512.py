"""Content addressed by sha512 over the real app and a real SQLite file (issue 12 item 2):
every way of pushing a blob by a sha512 digest, reading it back, mounting it, manifests
and referrers by sha512 digests, deletion; unsupported algorithms refused at the write.
Collection of sha512 content is in tests/test_gc.py."""

from __future__ import annotations

import hashlib
import os
from typing import Any

import orjson

from regd.services import SERVICES
from tests.conftest import Client, assert_error, image_manifest, push_blob, sha256, sha512

OCI = "application/vnd.oci.image.manifest.v1+json"


async def push512(client: Client, name: str, data: bytes) -> str:
    return await push_blob(client, name, data, "sha512")


async def assert_blob(client: Client, name: str, digest: str, data: bytes) -> None:
    """GET and HEAD by ``digest`` answer the bytes with the digest in its own algorithm."""
    for method in ("GET", "HEAD"):
        resp = await client.request(method, f"/v2/{name}/blobs/{digest}")
        assert resp.status == 200, await resp.text()
        assert resp.headers["Docker-Content-Digest"] == digest
        assert resp.headers["ETag"] == f'"{digest}"'
        assert resp.headers["Content-Length"] == str(len(data))
        assert await resp.read() == (data if method == "GET" else b"")


async def put_manifest(client: Client, name: str, reference: str, body: bytes) -> Any:
    return await client.put(f"/v2/{name}/manifests/{reference}", data=body, headers={"Content-Type": OCI})


async def upload_count(client: Client) -> int:
    count: int = await client.app[SERVICES].db.fetchval("SELECT COUNT(*) FROM uploads")
    return count


async def test_blob_pushed_by_a_sha512_digest_in_one_post_reads_back_by_it(client: Client) -> None:
    data = os.urandom(5000)
    digest = sha512(data)
    resp = await client.post("/v2/library/app/blobs/uploads/", params={"digest": digest}, data=data)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == digest
    assert resp.headers["Location"] == f"/v2/library/app/blobs/{digest}"
    await assert_blob(client, "library/app", digest, data)
    # the sha256 of the same bytes names nothing: a blob is known by what it was pushed as
    await assert_error(await client.get(f"/v2/library/app/blobs/{sha256(data)}"), 404, "BLOB_UNKNOWN")


async def test_blob_pushed_in_chunks_then_put_by_a_sha512_digest(client: Client) -> None:
    data = os.urandom(3000)
    digest = sha512(data)
    location = (await client.post("/v2/library/app/blobs/uploads/")).headers["Location"]
    headers = {"Content-Range": "0-999", "Content-Type": "application/octet-stream"}
    resp = await client.patch(location, data=data[:1000], headers=headers)
    assert resp.status == 202, await resp.text()
    resp = await client.patch(resp.headers["Location"], data=data[1000:2000])  # streamed, no range
    assert resp.status == 202, await resp.text()
    resp = await client.put(
        resp.headers["Location"],
        params={"digest": digest},
        data=data[2000:],
        headers={"Content-Range": "2000-2999"},
    )
    assert resp.status == 201, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == digest
    await assert_blob(client, "library/app", digest, data)


async def test_a_sha512_digest_that_does_not_match_stores_nothing(client: Client) -> None:
    data = os.urandom(100)
    wrong = sha512(data + b"x")
    resp = await client.post("/v2/library/app/blobs/uploads/", params={"digest": wrong}, data=data)
    await assert_error(resp, 400, "DIGEST_INVALID")
    for digest in (wrong, sha512(data)):
        await assert_error(await client.get(f"/v2/library/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")


async def test_unsupported_digest_algorithms_are_refused_at_the_write(client: Client) -> None:
    """400 DIGEST_INVALID before anything is kept: no blob, no session, no manifest."""
    data = os.urandom(100)
    sha384 = "sha384:" + hashlib.sha384(data).hexdigest()
    md5 = "md5:" + hashlib.md5(data).hexdigest()
    for digest in (sha384, md5, "blake3:" + "a" * 64, "sha256:" + "a" * 128, "sha512:" + "a" * 64):
        resp = await client.post("/v2/library/app/blobs/uploads/", params={"digest": digest}, data=data)
        body = await assert_error(resp, 400, "DIGEST_INVALID")
        assert digest.partition(":")[0] in body["errors"][0]["message"]
    assert await upload_count(client) == 0

    location = (await client.post("/v2/library/app/blobs/uploads/")).headers["Location"]
    resp = await client.put(location, params={"digest": sha384}, data=data)
    await assert_error(resp, 400, "DIGEST_INVALID")
    # the session is untouched by the refusal: the right digest still completes it
    resp = await client.put(location, params={"digest": sha512(data)}, data=data)
    assert resp.status == 201, await resp.text()

    config = await push_blob(client, "library/app", b"{}")
    manifest = image_manifest((config, 2), [])
    by384 = "sha384:" + hashlib.sha384(manifest).hexdigest()
    await assert_error(await put_manifest(client, "library/app", by384, manifest), 400, "DIGEST_INVALID")
    layer384 = image_manifest((config, 2), [(sha384, len(data))])
    await assert_error(await put_manifest(client, "library/app", "v1", layer384), 400, "MANIFEST_INVALID")
    resp = await client.get("/v2/library/app/tags/list")
    assert (await resp.json(content_type=None))["tags"] == []


async def test_a_sha512_blob_mounts_from_another_repository(client: Client) -> None:
    data = os.urandom(2000)
    digest = await push512(client, "library/src", data)
    params = {"mount": digest, "from": "library/src"}
    resp = await client.post("/v2/library/dst/blobs/uploads/", params=params)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == digest
    assert resp.headers["Location"] == f"/v2/library/dst/blobs/{digest}"
    await assert_blob(client, "library/dst", digest, data)


async def test_a_sha512_blob_is_deleted_by_its_digest(client: Client) -> None:
    data = os.urandom(300)
    digest = await push512(client, "library/app", data)
    resp = await client.delete(f"/v2/library/app/blobs/{digest}")
    assert resp.status == 202
    assert resp.headers["Docker-Content-Digest"] == digest
    await assert_error(await client.get(f"/v2/library/app/blobs/{digest}"), 404, "BLOB_UNKNOWN")


async def test_sha512_manifest_of_sha512_blobs_and_its_referrers_by_sha512_subject(client: Client) -> None:
    config = await push512(client, "library/app", b"{}")
    layer = os.urandom(700)
    layer_digest = await push512(client, "library/app", layer)
    body = image_manifest((config, 2), [(layer_digest, len(layer))])
    subject = sha512(body)
    resp = await put_manifest(client, "library/app", subject, body)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == subject

    signature = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI,
            "artifactType": "application/vnd.example.signature",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": config, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI, "digest": subject, "size": len(body)},
        }
    )
    resp = await put_manifest(client, "library/app", sha512(signature), signature)
    assert resp.status == 201, await resp.text()
    assert resp.headers["OCI-Subject"] == subject

    resp = await client.get(f"/v2/library/app/referrers/{subject}")
    assert resp.status == 200
    listed = (await resp.json(content_type=None))["manifests"]
    assert [(m["digest"], m["size"], m["artifactType"]) for m in listed] == [
        (sha512(signature), len(signature), "application/vnd.example.signature")
    ]
    # deleting the subject by its sha512 digest takes its referrers with it
    assert (await client.delete(f"/v2/library/app/manifests/{subject}")).status == 202
    for reference in (subject, sha512(signature)):
        resp = await client.get(f"/v2/library/app/manifests/{reference}")
        await assert_error(resp, 404, "MANIFEST_UNKNOWN")


async def test_tags_keep_pointing_at_the_sha256_manifest_pushed_by_tag(client: Client) -> None:
    config = await push_blob(client, "library/app", b"{}")
    body = image_manifest((config, 2), [])
    by_tag = await put_manifest(client, "library/app", "v1", body)
    assert by_tag.headers["Docker-Content-Digest"] == sha256(body)
    assert (await put_manifest(client, "library/app", sha512(body), body)).status == 201

    resp = await client.head("/v2/library/app/manifests/v1")
    assert resp.headers["Docker-Content-Digest"] == sha256(body)
    for digest in (sha256(body), sha512(body)):
        resp = await client.get(f"/v2/library/app/manifests/{digest}", headers={"Accept": OCI})
        assert resp.status == 200
        assert resp.headers["Docker-Content-Digest"] == digest
        assert await resp.read() == body
