"""Blob uploads over the real app: every variant clients use, and every bad input."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from unittest import mock

import pytest
from aiohttp import StreamReader

from regd.api.http import MAX_PIECES, BodyPieces
from regd.app import create_app
from regd.digest import Digest
from regd.metadata import uploads as upload_rows
from regd.services import SERVICES
from tests.conftest import Client, assert_error, make_config, push_blob, sha256


async def open_upload(client: Client, name: str = "library/app") -> str:
    resp = await client.post(f"/v2/{name}/blobs/uploads/")
    assert resp.status == 202
    assert resp.headers["Range"] == "0-0"
    assert resp.headers["Location"].endswith(resp.headers["Docker-Upload-UUID"])
    return resp.headers["Location"]


async def assert_stored(client: Client, name: str, data: bytes) -> None:
    resp = await client.get(f"/v2/{name}/blobs/{sha256(data)}")
    assert resp.status == 200
    assert await resp.read() == data


async def test_post_starts_a_session_with_location_and_range(client: Client) -> None:
    location = await open_upload(client)
    resp = await client.get(location)
    assert resp.status == 204
    assert resp.headers["Range"] == "0-0"
    assert resp.headers["Location"] == location


async def test_monolithic_post_with_digest_returns_201(client: Client) -> None:
    data = os.urandom(5000)
    resp = await client.post("/v2/library/app/blobs/uploads/", params={"digest": sha256(data)}, data=data)
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == sha256(data)
    assert resp.headers["Location"] == f"/v2/library/app/blobs/{sha256(data)}"
    await assert_stored(client, "library/app", data)


@pytest.mark.parametrize(
    ("size", "piece"),
    [
        (3 * 1024 * 1024 + 17, 100_000),
        # More pieces buffered than one writev takes: the upload hands them off in parts.
        (40_000 * 7, 7),
    ],
    ids=["100 kB pieces", "many tiny HTTP chunks"],
)
async def test_streamed_patch_without_content_range_then_put(client: Client, size: int, piece: int) -> None:
    data = os.urandom(size)
    location = await open_upload(client)

    async def body():  # type: ignore[no-untyped-def]
        for i in range(0, len(data), piece):
            yield data[i : i + piece]

    resp = await client.patch(location, data=body())
    assert resp.status == 202
    assert resp.headers["Range"] == f"0-{len(data) - 1}"
    resp = await client.put(location, params={"digest": sha256(data)})
    assert resp.status == 201
    await assert_stored(client, "library/app", data)


def _stream(pieces: list[bytes], http_chunks: bool) -> StreamReader:
    stream = StreamReader(mock.Mock(_reading_paused=False), 2**16, loop=asyncio.get_running_loop())
    for piece in pieces:
        if http_chunks:
            stream.begin_http_chunk_receiving()
        stream.feed_data(piece)
        if http_chunks:
            stream.end_http_chunk_receiving()
    stream.feed_eof()
    return stream


async def test_body_pieces_hands_over_buffered_pieces_without_joining_them() -> None:
    # The very objects aiohttp buffered, not a copy (readany would join them), with
    # chunked transfer coding (an HTTP chunk per piece, as docker sends) and without.
    for http_chunks in (True, False):
        pieces = [os.urandom(1000 + i) for i in range(5)]
        body = BodyPieces(_stream(pieces, http_chunks))
        got = await body.read_pieces()
        assert got == pieces
        assert all(a is b for a, b in zip(got, pieces, strict=True))
        assert await body.read_pieces() == []
        assert await body.read_pieces() == []


async def test_body_pieces_takes_at_most_max_pieces_a_call() -> None:
    pieces = [bytes([i % 256]) * 10 for i in range(MAX_PIECES * 2 + 3)]
    body = BodyPieces(_stream(pieces, True))
    calls = []
    while got := await body.read_pieces():
        calls.append(got)
    assert [len(c) for c in calls] == [MAX_PIECES, MAX_PIECES, 3]
    assert b"".join(b"".join(c) for c in calls) == b"".join(pieces)


async def test_chunked_patches_with_content_range(client: Client) -> None:
    data = os.urandom(10_000)
    location = await open_upload(client)
    for start_at in range(0, 10_000, 4000):
        chunk = data[start_at : start_at + 4000]
        resp = await client.patch(
            location,
            data=chunk,
            headers={
                "Content-Range": f"{start_at}-{start_at + len(chunk) - 1}",
                "Content-Type": "application/octet-stream",
            },
        )
        assert resp.status == 202, await resp.text()
        assert resp.headers["Range"] == f"0-{start_at + len(chunk) - 1}"
    resp = await client.put(location, params={"digest": sha256(data)})
    assert resp.status == 201
    await assert_stored(client, "library/app", data)


async def test_patch_out_of_order_returns_416_range_invalid(client: Client) -> None:
    location = await open_upload(client)
    resp = await client.patch(location, data=b"abcd", headers={"Content-Range": "0-3"})
    assert resp.status == 202
    resp = await client.patch(location, data=b"efgh", headers={"Content-Range": "8-11"})
    await assert_error(resp, 416, "RANGE_INVALID")
    assert resp.headers["Range"] == "0-3"
    assert resp.headers["Location"] == location
    # the session is untouched and continues where it was
    resp = await client.put(
        location, params={"digest": sha256(b"abcdefgh")}, data=b"efgh", headers={"Content-Range": "4-7"}
    )
    assert resp.status == 201
    await assert_stored(client, "library/app", b"abcdefgh")


async def test_repeated_chunk_returns_416(client: Client) -> None:
    location = await open_upload(client)
    assert (await client.patch(location, data=b"abcd", headers={"Content-Range": "0-3"})).status == 202
    resp = await client.patch(location, data=b"abcd", headers={"Content-Range": "0-3"})
    await assert_error(resp, 416, "RANGE_INVALID")
    resp = await client.patch(location, data=b"cd", headers={"Content-Range": "2-3"})  # overlapping
    await assert_error(resp, 416, "RANGE_INVALID")
    assert (await client.get(location)).headers["Range"] == "0-3"


async def test_content_length_not_matching_range_returns_400_size_invalid(client: Client) -> None:
    location = await open_upload(client)
    resp = await client.patch(location, data=b"abcdef", headers={"Content-Range": "0-3"})
    await assert_error(resp, 400, "SIZE_INVALID")
    assert (await client.get(location)).headers["Range"] == "0-0"


async def test_malformed_content_range_returns_416(client: Client) -> None:
    location = await open_upload(client)
    resp = await client.patch(location, data=b"abcd", headers={"Content-Range": "zero-three"})
    await assert_error(resp, 416, "RANGE_INVALID")


async def test_put_with_final_chunk(client: Client) -> None:
    location = await open_upload(client)
    await client.patch(location, data=b"hello ", headers={"Content-Range": "0-5"})
    resp = await client.put(
        location, params={"digest": sha256(b"hello world")}, data=b"world", headers={"Content-Range": "6-10"}
    )
    assert resp.status == 201
    await assert_stored(client, "library/app", b"hello world")


async def test_wrong_digest_returns_400_and_stores_nothing(client: Client, data_dir: Path) -> None:
    location = await open_upload(client)
    await client.patch(location, data=b"some bytes")
    wrong = sha256(b"other bytes")
    resp = await client.put(location, params={"digest": wrong})
    await assert_error(resp, 400, "DIGEST_INVALID")
    assert (await client.head(f"/v2/library/app/blobs/{wrong}")).status == 404
    assert (await client.head(f"/v2/library/app/blobs/{sha256(b'some bytes')}")).status == 404
    await assert_error(await client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert list((data_dir / "uploads").iterdir()) == []
    kept = sha256(b"some bytes").split(":")[1]
    assert not (data_dir / "blobs" / "sha256" / kept[:2] / kept).exists()
    assert not (data_dir / "blobs" / "sha256").exists() or not any(
        p.is_file() for p in (data_dir / "blobs" / "sha256").rglob("*")
    )


async def test_monolithic_wrong_digest_stores_nothing(client: Client) -> None:
    wrong = sha256(b"x")
    resp = await client.post("/v2/library/app/blobs/uploads/", params={"digest": wrong}, data=b"y")
    await assert_error(resp, 400, "DIGEST_INVALID")
    assert (await client.head(f"/v2/library/app/blobs/{wrong}")).status == 404


async def test_malformed_digest_returns_400_digest_invalid(client: Client) -> None:
    location = await open_upload(client)
    for bad in [
        "sha256:abc",
        "md5:" + "0" * 32,
        "sha256:" + "G" * 64,
        "sha256:../../../etc/passwd",
        "nodigest",
    ]:
        resp = await client.put(location, params={"digest": bad})
        await assert_error(resp, 400, "DIGEST_INVALID")
    # the session survived the bad requests
    assert (await client.get(location)).status == 204


async def test_put_without_digest_is_refused(client: Client) -> None:
    location = await open_upload(client)
    await assert_error(await client.put(location), 400, "DIGEST_INVALID")


async def test_delete_cancels_and_later_requests_are_404(client: Client) -> None:
    location = await open_upload(client)
    await client.patch(location, data=b"abc")
    assert (await client.delete(location)).status == 204
    await assert_error(await client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    await assert_error(await client.patch(location, data=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
    await assert_error(
        await client.put(location, params={"digest": sha256(b"abc")}), 404, "BLOB_UPLOAD_UNKNOWN"
    )
    await assert_error(await client.delete(location), 404, "BLOB_UPLOAD_UNKNOWN")


async def test_finished_session_is_unknown(client: Client) -> None:
    location = await open_upload(client)
    await client.put(location, params={"digest": sha256(b"abc")}, data=b"abc")
    await assert_error(await client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    await assert_error(
        await client.put(location, params={"digest": sha256(b"abc")}), 404, "BLOB_UPLOAD_UNKNOWN"
    )


async def test_unknown_and_traversal_upload_ids_are_404(client: Client) -> None:
    for upload_id in ["0" * 32, "nope", "..%2F..%2Fregd.db", "%2e%2e", "A" * 32]:
        resp = await client.get(f"/v2/library/app/blobs/uploads/{upload_id}")
        assert resp.status in (404, 400), upload_id
        assert resp.headers["Content-Type"].startswith("application/json")
    await assert_error(
        await client.patch("/v2/library/app/blobs/uploads/" + "f" * 32, data=b"x"), 404, "BLOB_UPLOAD_UNKNOWN"
    )


async def test_session_belongs_to_the_repository_in_its_url(client: Client) -> None:
    location = await open_upload(client, "library/a")
    other = location.replace("/library/a/", "/library/b/")
    await assert_error(await client.get(other), 404, "BLOB_UPLOAD_UNKNOWN")
    await assert_error(await client.patch(other, data=b"x"), 404, "BLOB_UPLOAD_UNKNOWN")
    assert (await client.get(location)).status == 204


async def test_cross_repository_mount(client: Client) -> None:
    data = os.urandom(2000)
    digest = await push_blob(client, "library/src", data)
    resp = await client.post(
        "/v2/library/dst/blobs/uploads/", params={"mount": digest, "from": "library/src"}
    )
    assert resp.status == 201
    assert resp.headers["Docker-Content-Digest"] == digest
    await assert_stored(client, "library/dst", data)


async def test_mount_of_unknown_blob_falls_back_to_a_session(client: Client) -> None:
    missing = sha256(b"never pushed")
    resp = await client.post(
        "/v2/library/dst/blobs/uploads/", params={"mount": missing, "from": "library/src"}
    )
    assert resp.status == 202
    assert "Docker-Upload-UUID" in resp.headers
    # a blob of another repository cannot be mounted from a repository that lacks it
    digest = await push_blob(client, "library/has", b"abc")
    resp = await client.post(
        "/v2/library/dst/blobs/uploads/", params={"mount": digest, "from": "library/lacks"}
    )
    assert resp.status == 202


async def test_upload_survives_an_app_restart(aiohttp_client, data_dir: Path) -> None:  # type: ignore[no-untyped-def]
    config = make_config(data_dir)
    client = await aiohttp_client(create_app(config))
    data = os.urandom(50_000)
    location = await open_upload(client)
    await client.patch(location, data=data[:20_000], headers={"Content-Range": "0-19999"})
    await client.close()

    client = await aiohttp_client(create_app(config))
    resp = await client.get(location)
    assert resp.status == 204
    assert resp.headers["Range"] == "0-19999"
    resp = await client.patch(location, data=data[20_000:], headers={"Content-Range": "20000-49999"})
    assert resp.status == 202
    # the running hash was lost with the first app: the commit re-hashes from disk
    resp = await client.put(location, params={"digest": sha256(data)})
    assert resp.status == 201
    await assert_stored(client, "library/app", data)


async def test_a_commit_in_another_worker_takes_the_checksums_the_write_ended_with(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each worker process has its own running hashes; the one that commits a session
    another wrote checks the digest against the checksums recorded with the write's
    size, without reading the file back: a wrong digest is still refused, and bytes a
    write left past the recorded size (a worker that died mid-write) are cut off."""
    uploads = client.server.app[SERVICES].uploads  # type: ignore[union-attr]
    data = os.urandom(300_000)
    location = await open_upload(client)
    resp = await client.patch(location, data=data)
    assert resp.status == 202
    uploads._hashes.clear()  # as in another worker process

    def no_read_back(*args: object) -> None:
        raise AssertionError("the commit read the upload back")

    monkeypatch.setattr("regd.storage.fsio.read_through_sync", no_read_back)
    resp = await client.put(location, params={"digest": sha256(data + b"x")})
    await assert_error(resp, 400, "DIGEST_INVALID")
    location = await open_upload(client)
    await client.patch(location, data=data)
    uploads._hashes.clear()
    data_file = uploads.layout.upload_data(location.rsplit("/", 1)[1])
    with data_file.open("ab") as f:
        f.write(b"left by a write that never ended")
    resp = await client.put(location, params={"digest": sha256(data)})
    assert resp.status == 201
    await assert_stored(client, "library/app", data)
    store = client.server.app[SERVICES].store  # type: ignore[union-attr]
    assert store.path(Digest.parse(sha256(data))).read_bytes() == data  # the file, not just its size


async def test_client_disconnect_mid_upload_keeps_what_arrived(client: Client) -> None:
    location = await open_upload(client)
    first = os.urandom(100_000)
    _reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(
        f"PATCH {location} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n"
        "Content-Type: application/octet-stream\r\n\r\n".encode()
        + first
    )
    await writer.drain()
    # Until the session is being written (the bytes are on their way), then cut off.
    db, upload_id = client.server.app[SERVICES].db, location.rsplit("/", 1)[1]  # type: ignore[union-attr]
    deadline = time.monotonic() + 10
    while (row := await upload_rows.get(db, upload_id)) is None or row.state.value != "receiving":
        assert time.monotonic() < deadline, "the PATCH never started"
        await asyncio.sleep(0.02)
    writer.close()
    deadline = time.monotonic() + 10
    while True:
        resp = await client.get(location)
        if resp.status == 204 and resp.headers["Range"] != "0-0":
            break
        assert time.monotonic() < deadline, f"no bytes kept: {resp.status} {resp.headers.get('Range')}"
        await asyncio.sleep(0.05)
    # Range 0-0 would mean nothing kept; anything else is the last byte kept, inclusive.
    received = int(resp.headers["Range"].split("-")[1]) + 1
    assert 0 < received <= len(first)
    # the client resumes from the reported offset and finishes
    rest = first[received:] + b"tail"
    resp = await client.patch(
        location, data=rest, headers={"Content-Range": f"{received}-{received + len(rest) - 1}"}
    )
    assert resp.status == 202, await resp.text()
    resp = await client.put(location, params={"digest": sha256(first + b"tail")})
    assert resp.status == 201
    await assert_stored(client, "library/app", first + b"tail")


async def test_janitor_expires_abandoned_sessions(client: Client, data_dir: Path) -> None:
    location = await open_upload(client)
    await client.patch(location, data=b"abandoned")
    keep = await open_upload(client)
    services = client.app[SERVICES]  # type: ignore[index]
    upload_id = location.rsplit("/", 1)[1]
    await services.db.writer.execute("UPDATE uploads SET updated_at = 0 WHERE id = ?", (upload_id,))
    assert await services.uploads.expire(3600, time.time()) == 1
    await assert_error(await client.get(location), 404, "BLOB_UPLOAD_UNKNOWN")
    assert not (data_dir / "uploads" / upload_id).exists()
    assert (await client.get(keep)).status == 204


async def test_a_session_committed_without_any_bytes_stores_the_empty_blob(client: Client) -> None:
    # Found by the upload state machine (tests/test_properties.py): a 500 before.
    location = await open_upload(client)

    resp = await client.put(location, params={"digest": sha256(b"")})

    assert resp.status == 201, await resp.text()
    await assert_stored(client, "library/app", b"")
