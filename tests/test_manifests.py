"""Manifests: push, pull, delete, every media type, every bad input."""

from __future__ import annotations

import hashlib
import io
import os

import orjson

from tests.conftest import Client, assert_error, image_manifest, push_blob, push_image, sha256

OCI = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


async def put(client: Client, name: str, ref: str, body: bytes, media_type: str | None = OCI):  # type: ignore[no-untyped-def]
    headers = {"Content-Type": media_type} if media_type else {}
    return await client.put(f"/v2/{name}/manifests/{ref}", data=body, headers=headers)


async def test_oci_manifest_round_trip_by_tag_and_digest(client: Client) -> None:
    digest, manifest, _ = await push_image(client, "library/app", "v1")
    assert digest == sha256(manifest)
    for ref in ("v1", digest):
        resp = await client.get(f"/v2/library/app/manifests/{ref}", headers={"Accept": OCI})
        assert resp.status == 200
        assert await resp.read() == manifest
        assert resp.headers["Content-Type"] == OCI
        assert resp.headers["Docker-Content-Digest"] == digest
        resp = await client.head(f"/v2/library/app/manifests/{ref}")
        assert resp.status == 200
        assert resp.headers["Content-Length"] == str(len(manifest))
        assert resp.headers["Docker-Content-Digest"] == digest


async def test_put_answers_201_with_location_and_digest(client: Client) -> None:
    blobs = [os.urandom(100), os.urandom(200)]
    digests = [await push_blob(client, "library/app", b) for b in blobs]
    body = image_manifest((digests[0], 100), [(digests[1], 200)])
    resp = await put(client, "library/app", "latest", body)
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == sha256(body)
    assert resp.headers["Location"] == f"/v2/library/app/manifests/{sha256(body)}"


async def test_bytes_are_stored_exactly_as_sent(client: Client) -> None:
    c = await push_blob(client, "library/app", b"{}")
    body = (
        b'{\n  "schemaVersion":   2, "mediaType": "%s",\n "config": '
        b'{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "%s", "size": 2},'
        b' "layers": []}\n\n' % (OCI.encode(), c.encode())
    )
    resp = await put(client, "library/app", "odd", body)
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == sha256(body)
    assert await (await client.get("/v2/library/app/manifests/odd")).read() == body


async def test_docker_schema2_manifest_and_manifest_list(client: Client) -> None:
    config = await push_blob(client, "library/app", b'{"architecture":"amd64"}')
    layer = await push_blob(client, "library/app", b"layer")
    m = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": config,
                "size": 24,
            },
            "layers": [
                {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": layer, "size": 5}
            ],
        }
    )
    assert (await put(client, "library/app", sha256(m), m, DOCKER)).status == 201
    lst = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER_LIST,
            "manifests": [
                {
                    "mediaType": DOCKER,
                    "digest": sha256(m),
                    "size": len(m),
                    "platform": {"architecture": "amd64", "os": "linux"},
                }
            ],
        }
    )
    resp = await put(client, "library/app", "multi", lst, DOCKER_LIST)
    assert resp.status == 201
    resp = await client.get("/v2/library/app/manifests/multi", headers={"Accept": f"{DOCKER}, {DOCKER_LIST}"})
    assert resp.headers["Content-Type"] == DOCKER_LIST
    assert await resp.read() == lst


async def test_oci_index_requires_its_children(client: Client) -> None:
    child, child_bytes, _ = await push_image(client, "library/app", "child")
    index = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI, "digest": child, "size": len(child_bytes)}],
        }
    )
    assert (await put(client, "library/app", "idx", index, OCI_INDEX)).status == 201
    missing = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI, "digest": sha256(b"gone"), "size": 3}],
        }
    )
    await assert_error(
        await put(client, "library/app", "bad", missing, OCI_INDEX), 400, "MANIFEST_BLOB_UNKNOWN"
    )


async def test_manifest_referencing_missing_blobs_is_400_and_stores_nothing(client: Client) -> None:
    config = await push_blob(client, "library/app", b"cfg")
    body = image_manifest((config, 3), [(sha256(b"missing layer"), 13)])
    resp = await put(client, "library/app", "v1", body)
    body_json = await assert_error(resp, 400, "MANIFEST_BLOB_UNKNOWN")
    assert sha256(b"missing layer") in str(body_json)
    await assert_error(await client.get("/v2/library/app/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    # config of another repository does not count
    other = await push_blob(client, "library/other", b"layer elsewhere")
    body = image_manifest((config, 3), [(other, 15)])
    await assert_error(await put(client, "library/app", "v1", body), 400, "MANIFEST_BLOB_UNKNOWN")


async def test_foreign_layers_with_urls_need_no_blob(client: Client) -> None:
    config = await push_blob(client, "library/win", b"cfg")
    foreign = {
        "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "digest": sha256(b"windows base"),
        "size": 12,
        "urls": ["https://mcr.microsoft.com/v2/windows/blobs/" + sha256(b"windows base")],
    }
    body = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": DOCKER,
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "digest": config,
                "size": 3,
            },
            "layers": [foreign],
        }
    )
    assert (await put(client, "library/win", "ltsc", body, DOCKER)).status == 201
    # without urls the layer must be stored like any other
    no_urls = orjson.loads(body)
    del no_urls["layers"][0]["urls"]
    await assert_error(
        await put(client, "library/win", "x", orjson.dumps(no_urls), DOCKER), 400, "MANIFEST_BLOB_UNKNOWN"
    )
    for url in ("ftp://example.com/layer", "https://example.com/layer#frag", "notaurl"):
        bad = orjson.loads(body)
        bad["layers"][0]["urls"] = [url]
        await assert_error(
            await put(client, "library/win", "y", orjson.dumps(bad), DOCKER), 400, "MANIFEST_INVALID"
        )


async def test_invalid_manifests_are_400_manifest_invalid(client: Client) -> None:
    config = await push_blob(client, "library/app", b"cfg")
    good = orjson.loads(image_manifest((config, 3), []))
    cases: list[tuple[bytes, str | None]] = [
        (b"not json", OCI),
        (b"[]", OCI),
        (orjson.dumps({**good, "schemaVersion": 1}), OCI),
        (orjson.dumps({**good, "layers": "nope"}), OCI),
        (orjson.dumps({**good, "config": {"digest": config}}), OCI),
        (orjson.dumps({**good, "config": {**good["config"], "size": -1}}), OCI),
        (orjson.dumps({**good, "config": {**good["config"], "digest": "sha256:short"}}), OCI),
        (orjson.dumps(good), DOCKER_LIST),  # Content-Type disagrees with mediaType
        (orjson.dumps({**good, "mediaType": "application/x-unknown"}), None),
        (
            orjson.dumps({"schemaVersion": 1, "name": "x", "fsLayers": []}),
            "application/vnd.docker.distribution.manifest.v1+prettyjws",
        ),
    ]
    for body, media_type in cases:
        await assert_error(await put(client, "library/app", "bad", body, media_type), 400, "MANIFEST_INVALID")
    await assert_error(await client.get("/v2/library/app/manifests/bad"), 404, "MANIFEST_UNKNOWN")


async def test_oversized_manifest_is_413(client: Client) -> None:
    body = b'{"schemaVersion": 2, "pad": "' + b"x" * (4 * 1024 * 1024) + b'"}'
    resp = await client.put(
        "/v2/library/app/manifests/big", data=io.BytesIO(body), headers={"Content-Type": OCI}
    )
    await assert_error(resp, 413, "REQUEST_ENTITY_TOO_LARGE")

    async def chunks():  # type: ignore[no-untyped-def]
        yield body  # chunked encoding: no Content-Length to refuse early

    resp = await client.put("/v2/library/app/manifests/big", data=chunks(), headers={"Content-Type": OCI})
    await assert_error(resp, 413, "REQUEST_ENTITY_TOO_LARGE")


async def test_put_by_digest_must_match_the_bytes(client: Client) -> None:
    config = await push_blob(client, "library/app", b"cfg")
    body = image_manifest((config, 3), [])
    await assert_error(await put(client, "library/app", sha256(b"other"), body), 400, "DIGEST_INVALID")
    assert (await put(client, "library/app", sha256(body), body)).status == 201


async def test_invalid_tag_is_refused(client: Client) -> None:
    config = await push_blob(client, "library/app", b"cfg")
    body = image_manifest((config, 3), [])
    await assert_error(await put(client, "library/app", "-bad", body), 400, "TAG_INVALID")
    await assert_error(await put(client, "library/app", "a" * 129, body), 400, "TAG_INVALID")


async def test_accept_header_that_excludes_the_type_is_404(client: Client) -> None:
    await push_image(client, "library/app", "v1")
    resp = await client.get("/v2/library/app/manifests/v1", headers={"Accept": DOCKER})
    await assert_error(resp, 404, "MANIFEST_UNKNOWN")
    resp = await client.get("/v2/library/app/manifests/v1", headers={"Accept": "*/*"})
    assert resp.status == 200


async def test_delete_by_tag_removes_only_the_tag(client: Client) -> None:
    digest, _, _ = await push_image(client, "library/app", "v1")
    resp = await client.delete("/v2/library/app/manifests/v1")
    assert resp.status == 202
    await assert_error(await client.get("/v2/library/app/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert (await client.get(f"/v2/library/app/manifests/{digest}")).status == 200


async def test_delete_by_digest_removes_manifest_and_its_tags(client: Client) -> None:
    digest, _, blobs = await push_image(client, "library/app", "v1")
    await push_image(client, "library/app", "v2")  # stays
    assert (await client.delete(f"/v2/library/app/manifests/{digest}")).status == 202
    await assert_error(await client.get(f"/v2/library/app/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")
    await assert_error(await client.get("/v2/library/app/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert (await client.get("/v2/library/app/manifests/v2")).status == 200
    # blobs stay until garbage collection
    assert (await client.get(f"/v2/library/app/blobs/{sha256(blobs[1])}")).status == 200
    await assert_error(await client.delete(f"/v2/library/app/manifests/{digest}"), 404, "MANIFEST_UNKNOWN")


async def test_delete_of_an_index_child_is_refused(client: Client) -> None:
    child, child_bytes, _ = await push_image(client, "library/app", "child")
    index = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI, "digest": child, "size": len(child_bytes)}],
        }
    )
    await put(client, "library/app", "idx", index, OCI_INDEX)
    await assert_error(
        await client.delete(f"/v2/library/app/manifests/{child}"), 412, "VIOLATE_FOREIGN_KEY_CONSTRAINT"
    )
    assert (await client.get(f"/v2/library/app/manifests/{child}")).status == 200


async def test_subject_answers_oci_subject_and_lists_in_referrers(client: Client) -> None:
    subject, subject_bytes, _ = await push_image(client, "library/app", "v1")
    empty = await push_blob(client, "library/app", b"{}")
    sig = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI,
            "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI, "digest": subject, "size": len(subject_bytes)},
            "annotations": {"org.example": "yes"},
        }
    )
    resp = await put(client, "library/app", sha256(sig), sig)
    assert resp.status == 201
    assert resp.headers["OCI-Subject"] == subject
    sbom = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI,
            "config": {"mediaType": "application/spdx+json", "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI, "digest": subject, "size": len(subject_bytes)},
        }
    )
    assert (await put(client, "library/app", sha256(sbom), sbom)).status == 201

    resp = await client.get(f"/v2/library/app/referrers/{subject}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == OCI_INDEX
    body = await resp.json(content_type=None)
    assert body["mediaType"] == OCI_INDEX
    by_digest = {m["digest"]: m for m in body["manifests"]}
    assert by_digest[sha256(sig)]["artifactType"] == "application/vnd.dev.cosign.artifact.sig.v1+json"
    assert by_digest[sha256(sig)]["annotations"] == {"org.example": "yes"}
    assert by_digest[sha256(sbom)]["artifactType"] == "application/spdx+json"
    assert "OCI-Filters-Applied" not in resp.headers

    resp = await client.get(
        f"/v2/library/app/referrers/{subject}", params={"artifactType": "application/spdx+json"}
    )
    body = await resp.json(content_type=None)
    assert [m["digest"] for m in body["manifests"]] == [sha256(sbom)]
    assert resp.headers["OCI-Filters-Applied"] == "artifactType"

    # referrers go with their subject
    assert (await client.delete(f"/v2/library/app/manifests/{subject}")).status == 202
    await assert_error(await client.get(f"/v2/library/app/manifests/{sha256(sig)}"), 404, "MANIFEST_UNKNOWN")


async def test_referrers_of_unknown_subject_is_an_empty_index(client: Client) -> None:
    resp = await client.get(f"/v2/library/app/referrers/{sha256(b'none')}")
    assert resp.status == 200
    assert (await resp.json(content_type=None))["manifests"] == []
    await assert_error(await client.get("/v2/library/app/referrers/sha256:bad"), 400, "DIGEST_INVALID")


async def test_subject_may_be_pushed_before_its_target(client: Client) -> None:
    empty = await push_blob(client, "library/app", b"{}")
    future = sha256(b"not pushed yet")
    sig = orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI,
            "artifactType": "application/example",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
            "layers": [],
            "subject": {"mediaType": OCI, "digest": future, "size": 10},
        }
    )
    resp = await put(client, "library/app", sha256(sig), sig)
    assert resp.status == 201
    body = await (await client.get(f"/v2/library/app/referrers/{future}")).json(content_type=None)
    assert len(body["manifests"]) == 1


async def test_manifest_pushed_by_sha512_digest_reads_back_by_that_digest(client: Client) -> None:
    """A write accepted by a sha512 digest must read back by it (it answered 201 and then
    404 before): GET, HEAD and DELETE by the sha512 digest, Docker-Content-Digest in sha512."""
    blobs = [os.urandom(100), os.urandom(200)]
    digests = [await push_blob(client, "library/app", b) for b in blobs]
    body = image_manifest((digests[0], 100), [(digests[1], 200)])
    by512 = "sha512:" + hashlib.sha512(body).hexdigest()

    resp = await put(client, "library/app", by512, body)
    assert resp.status == 201, await resp.text()
    assert resp.headers["Docker-Content-Digest"] == by512
    assert resp.headers["Location"] == f"/v2/library/app/manifests/{by512}"

    resp = await client.get(f"/v2/library/app/manifests/{by512}", headers={"Accept": OCI})
    assert resp.status == 200
    assert await resp.read() == body
    assert resp.headers["Docker-Content-Digest"] == by512
    resp = await client.head(f"/v2/library/app/manifests/{by512}")
    assert resp.status == 200
    assert resp.headers["Content-Length"] == str(len(body))

    assert (await client.delete(f"/v2/library/app/manifests/{by512}")).status == 202
    await assert_error(await client.get(f"/v2/library/app/manifests/{by512}"), 404, "MANIFEST_UNKNOWN")


async def test_manifest_put_by_a_wrong_or_unsupported_digest_stores_nothing(client: Client) -> None:
    c = await push_blob(client, "library/app", b"{}")
    body = image_manifest((c, 2), [])
    wrong512 = "sha512:" + hashlib.sha512(body + b" ").hexdigest()
    await assert_error(await put(client, "library/app", wrong512, body), 400, "DIGEST_INVALID")
    md5 = "md5:" + hashlib.md5(body).hexdigest()
    await assert_error(await put(client, "library/app", md5, body), 400, "DIGEST_INVALID")
    for ref in (wrong512, sha256(body)):
        await assert_error(await client.get(f"/v2/library/app/manifests/{ref}"), 404, "MANIFEST_UNKNOWN")


async def test_a_reference_neither_tag_nor_digest_is_unknown_to_get_and_head_and_invalid_to_put(
    client: Client,
) -> None:
    """GET/HEAD answer 404 MANIFEST_UNKNOWN, as CNCF distribution does and both conformance
    programs expect (400 before); a PUT to it is still refused with 400 TAG_INVALID."""
    await push_image(client, "library/app", "v1")
    for reference in (".INVALID_MANIFEST_NAME", "-bad", "a" * 129):
        resp = await client.get(f"/v2/library/app/manifests/{reference}")
        await assert_error(resp, 404, "MANIFEST_UNKNOWN")
        resp = await client.head(f"/v2/library/app/manifests/{reference}")
        assert resp.status == 404
        c = await push_blob(client, "library/app", b"{}")
        resp = await put(client, "library/app", reference, image_manifest((c, 2), []))
        await assert_error(resp, 400, "TAG_INVALID")
    # a malformed digest is still a bad request, not an unknown manifest
    await assert_error(await client.get("/v2/library/app/manifests/sha256:abc"), 400, "DIGEST_INVALID")


async def test_push_by_digest_with_tag_parameters_sets_every_tag_and_names_them_in_oci_tag(
    client: Client,
) -> None:
    """Spec main: PUT by digest with ``?tag=`` sets the tags and answers ``OCI-Tag``; this
    is how a client tags a manifest it pushes by a sha512 digest (a PUT by tag hashes sha256)."""
    c = await push_blob(client, "library/app", b"{}", "sha512")
    body = image_manifest((c, 2), [])
    by512 = "sha512:" + hashlib.sha512(body).hexdigest()
    resp = await client.put(
        f"/v2/library/app/manifests/{by512}",
        params=[("tag", "1.2.3"), ("tag", "latest"), ("tag", "1.2.3")],
        data=body,
        headers={"Content-Type": OCI},
    )
    assert resp.status == 201, await resp.text()
    assert resp.headers["OCI-Tag"] == "1.2.3, latest"
    for tag in ("1.2.3", "latest"):
        got = await client.get(f"/v2/library/app/manifests/{tag}", headers={"Accept": OCI})
        assert got.headers["Docker-Content-Digest"] == by512
        assert await got.read() == body
    tags = await (await client.get("/v2/library/app/tags/list")).json(content_type=None)
    assert sorted(tags["tags"]) == ["1.2.3", "latest"]

    # one bad tag refuses the whole push: nothing is stored
    other = image_manifest((c, 2), [], annotations={"x": "y"})
    other512 = "sha512:" + hashlib.sha512(other).hexdigest()
    resp = await client.put(
        f"/v2/library/app/manifests/{other512}",
        params=[("tag", "ok"), ("tag", "-bad")],
        data=other,
        headers={"Content-Type": OCI},
    )
    await assert_error(resp, 400, "TAG_INVALID")
    await assert_error(await client.get(f"/v2/library/app/manifests/{other512}"), 404, "MANIFEST_UNKNOWN")
    await assert_error(await client.get("/v2/library/app/manifests/ok"), 404, "MANIFEST_UNKNOWN")
