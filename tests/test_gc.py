"""Deletion paths, then a collection: what nothing references is freed, to the byte, and
everything still referenced pulls intact. Grace period, dry run, orphans, trash, uploads."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from regd import cron
from regd.api.harbor.gc import GC
from regd.app import create_app
from regd.config import load_config
from regd.digest import Digest
from regd.gc import GCService, Parameters, Report
from regd.gc.collector import TMP_MIN_AGE
from regd.services import SERVICES, Services
from regd.storage import fsio
from regd.storage.blobstore import BlobStore
from regd.storage.layout import Layout
from tests.auth_support import ADMIN, basic, create_user

from .gc_support import (
    DockerStyleClient,
    Image,
    check_consistent,
    digest_of,
    gc_config,
    image,
    index,
    random_image,
    run_regd_gc,
    sha256,
)


@dataclass
class Env:
    app: web.Application
    client: DockerStyleClient
    data_dir: Path
    http: ClientSession
    base: str

    @property
    def gc(self) -> GCService:
        return self.app[GC]

    @property
    def services(self) -> Services:
        return self.app[SERVICES]

    async def collect(self, grace: float | None = None, **parameters: Any) -> Report:
        _, report = await self.gc.run(Parameters(**parameters), grace_period=grace)
        return report

    async def sql(self, statement: str, params: tuple[Any, ...] = ()) -> None:
        async with self.services.db.transaction() as conn:
            await conn.execute(statement, params)

    def exists(self, digest: str) -> bool:
        return Layout(self.data_dir).blob(Digest.parse(digest)).exists()


Start = Callable[..., Awaitable[Env]]


@pytest.fixture
async def gc_env(
    aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path
) -> AsyncIterator[Start]:
    sessions: list[ClientSession] = []

    async def make(**gc: Any) -> Env:
        app = create_app(gc_config(tmp_path / "data", **gc))
        server = await aiohttp_server(app)
        session = ClientSession()
        sessions.append(session)
        base = str(server.make_url("")).rstrip("/")
        return Env(app, DockerStyleClient(session, base), tmp_path / "data", session, base)

    yield make
    for session in sessions:
        await session.close()


def size_of(*images: Image, blobs: tuple[bytes, ...] = ()) -> int:
    return sum(len(i.manifest) for i in images) + sum(len(b) for b in blobs)


async def status_of(env: Env, method: str, path: str) -> int:
    async with env.http.request(method, env.base + path) as resp:
        return resp.status


# -- deletion paths ----------------------------------------------------------------------


async def test_deleting_a_tag_frees_nothing_and_the_image_still_pulls(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    img = random_image()
    await env.client.push("lib/app", "one", img)
    await env.client.push("lib/app", "two", img)
    assert await env.client.delete("lib/app", "one") == 202
    assert await status_of(env, "GET", "/v2/lib/app/manifests/one") == 404
    report = await env.collect()
    assert report.bytes_freed == 0 and report.blobs_purged == 0
    await env.client.pull("lib/app", "two", img)
    await env.client.pull("lib/app", img.digest, img)
    check_consistent(env.data_dir, only_referenced=True)


async def test_deleting_a_manifest_frees_exactly_what_nothing_else_references(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    shared = os.urandom(3000)
    first = image([os.urandom(100), shared, os.urandom(2000)])
    second = image([os.urandom(101), shared])
    signature = image([os.urandom(50), os.urandom(60)], subject=first)
    await env.client.push("lib/app", "first", first)
    await env.client.push("lib/app", "second", second)
    await env.client.push("lib/app", signature.digest, signature)

    assert await env.client.delete("lib/app", first.digest) == 202
    for reference in ("first", first.digest, signature.digest):
        assert await status_of(env, "GET", f"/v2/lib/app/manifests/{reference}") == 404
    report = await env.collect()

    unique = [b for d, b in first.blobs.items() if d not in second.blobs]
    expected = size_of(first, signature) + sum(map(len, unique)) + sum(map(len, signature.blobs.values()))
    assert report.bytes_freed == expected
    assert report.blobs_purged == 2 + len(unique) + len(signature.blobs)
    assert env.exists(sha256(shared))
    await env.client.pull("lib/app", "second", second)
    check_consistent(env.data_dir, only_referenced=True)


async def test_deleting_a_child_of_an_index_is_refused_with_412(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    child = random_image()
    await env.client.push("lib/multi", child.digest, child)
    await env.client.push("lib/multi", "latest", index([child]))
    async with env.http.delete(f"{env.base}/v2/lib/multi/manifests/{child.digest}") as resp:
        assert resp.status == 412
        assert (await resp.json())["errors"][0]["code"] == "VIOLATE_FOREIGN_KEY_CONSTRAINT"
    assert (await env.collect()).bytes_freed == 0
    await env.client.pull("lib/multi", child.digest, child)


async def test_deleting_an_index_takes_its_untagged_children_and_keeps_tagged_ones(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    untagged, tagged = random_image(), random_image()
    await env.client.push("lib/multi", untagged.digest, untagged)
    await env.client.push("lib/multi", "amd64", tagged)
    multi = index([untagged, tagged])
    await env.client.push("lib/multi", "latest", multi)

    assert await env.client.delete("lib/multi", multi.digest) == 202
    assert await status_of(env, "GET", f"/v2/lib/multi/manifests/{untagged.digest}") == 404
    report = await env.collect()
    assert report.bytes_freed == size_of(multi, untagged, blobs=tuple(untagged.blobs.values()))
    await env.client.pull("lib/multi", "amd64", tagged)
    check_consistent(env.data_dir, only_referenced=True)


async def test_deleting_a_repository_frees_what_only_it_used(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    shared = os.urandom(4000)
    mine = image([os.urandom(100), shared, os.urandom(500)])
    theirs = image([os.urandom(100), shared])
    await env.client.push("team/mine", "v1", mine)
    await env.client.push("team/theirs", "v1", theirs, mount_from="team/mine")

    await env.services.registry.delete_repository("team/mine")
    async with env.http.get(f"{env.base}/v2/team/mine/tags/list") as resp:
        assert resp.status == 404
    report = await env.collect()
    assert report.bytes_freed == size_of(mine) + sum(len(b) for b in mine.blobs.values() if b is not shared)
    await env.client.pull("team/theirs", "v1", theirs)
    check_consistent(env.data_dir, only_referenced=True)


async def test_deleting_a_blob_link_frees_a_blob_no_manifest_uses(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    data = os.urandom(777)
    await env.client.upload("lib/loose", data)
    assert await status_of(env, "DELETE", f"/v2/lib/loose/blobs/{sha256(data)}") == 202
    assert await status_of(env, "HEAD", f"/v2/lib/loose/blobs/{sha256(data)}") == 404
    report = await env.collect()
    assert (report.blobs_purged, report.bytes_freed) == (1, 777)
    assert not env.exists(sha256(data))


async def test_sha512_manifests_referrers_and_blobs_are_deleted_then_collected_to_the_byte(
    gc_env: Start,
) -> None:
    """Content addressed by sha512 (pushed by sha512 digests, a referrer whose subject is a
    sha512 digest, an index of sha512 children) is deleted and collected like sha256's."""
    env = await gc_env(grace_period=0)
    shared = os.urandom(3000)
    first = image([os.urandom(100), shared, os.urandom(2000)], algorithm="sha512")
    second = image([os.urandom(101), shared], algorithm="sha512")
    signature = image([os.urandom(50), os.urandom(60)], subject=first, algorithm="sha512")
    child = random_image(algorithm="sha512")
    multi = index([child], algorithm="sha512")
    for img in (first, second, signature, child, multi):
        await env.client.push("lib/app", img.digest, img)
    assert all(env.exists(d) for d in [first.digest, *first.blobs, multi.digest])

    assert await env.client.delete("lib/app", first.digest) == 202
    assert await env.client.delete("lib/app", multi.digest) == 202
    for reference in (first.digest, signature.digest, multi.digest, child.digest):
        assert await status_of(env, "GET", f"/v2/lib/app/manifests/{reference}") == 404
    report = await env.collect()

    unique = [b for d, b in first.blobs.items() if d not in second.blobs]
    expected = size_of(first, signature, multi, child) + sum(map(len, unique))
    expected += sum(map(len, signature.blobs.values())) + sum(map(len, child.blobs.values()))
    assert report.bytes_freed == expected
    assert report.blobs_purged == 4 + len(unique) + len(signature.blobs) + len(child.blobs)
    assert not env.exists(first.digest) and not env.exists(multi.digest)
    assert env.exists(digest_of(shared, "sha512"))
    await env.client.pull("lib/app", second.digest, second)
    check_consistent(env.data_dir, only_referenced=True)


async def test_a_sha512_blob_whose_link_is_deleted_is_collected(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    data = os.urandom(777)
    digest = digest_of(data, "sha512")
    await env.client.upload("lib/loose", data, digest)
    assert await status_of(env, "DELETE", f"/v2/lib/loose/blobs/{digest}") == 202
    assert await status_of(env, "HEAD", f"/v2/lib/loose/blobs/{digest}") == 404
    report = await env.collect()
    assert (report.blobs_purged, report.bytes_freed) == (1, 777)
    assert not env.exists(digest)


async def test_delete_untagged_collects_an_untagged_sha512_manifest_and_keeps_a_tagged_one(
    gc_env: Start,
) -> None:
    """Tags keep pointing at what was pushed by tag: the sha512 push is untagged."""
    env = await gc_env(grace_period=100)
    untagged = random_image(algorithm="sha512")
    tagged = random_image(algorithm="sha512")
    await env.client.push("lib/app", untagged.digest, untagged)
    await env.client.push("lib/app", tagged.digest, tagged)
    status, _ = await env.client.put_manifest("lib/app", "v1", tagged)
    assert status == 201
    old = time.time() - 1000
    await env.sql("UPDATE manifests SET pushed_at = ?", (old,))
    await env.sql("UPDATE blobs SET last_seen = ?", (old,))

    report = await env.collect(delete_untagged=True)

    # gone: the untagged sha512 manifest, its blobs, and the sha512 copy of the tagged one
    assert report.manifests_purged == 2
    assert report.bytes_freed == size_of(untagged, tagged) + sum(map(len, untagged.blobs.values()))
    await env.client.pull("lib/app", "v1", replace(tagged, algorithm="sha256"))
    check_consistent(env.data_dir, only_referenced=True)


async def test_foreign_layers_are_neither_needed_nor_swept(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    foreign = ("sha256:" + "ab" * 32, 12345)
    img = image([os.urandom(100), os.urandom(200)], foreign=(foreign,))
    await env.client.push("win/app", "v1", img)
    assert (await env.collect()).bytes_freed == 0
    await env.client.pull("win/app", "v1", img)
    check_consistent(env.data_dir, only_referenced=True)


# -- grace period ------------------------------------------------------------------------


async def test_grace_period_keeps_unreferenced_blobs_until_last_seen_plus_one_and_a_half(
    gc_env: Start,
) -> None:
    env = await gc_env(grace_period=100)
    data = os.urandom(500)
    await env.client.upload("lib/app", data)
    assert (await env.collect()).blobs_purged == 0
    await env.sql("UPDATE blobs SET last_seen = ?", (time.time() - 140,))
    assert (await env.collect()).blobs_purged == 0, "kept until last_seen + 150"
    await env.sql("UPDATE blobs SET last_seen = ?", (time.time() - 160,))
    assert (await env.collect()).blobs_purged == 1


async def test_a_head_refreshes_the_grace_of_a_blob_it_confirms(gc_env: Start) -> None:
    env = await gc_env(grace_period=100)
    data = os.urandom(500)
    await env.client.upload("lib/app", data)
    await env.sql("UPDATE blobs SET last_seen = ?", (time.time() - 140,))
    assert await env.client.head_blob("lib/app", sha256(data))
    seen = await env.services.db.fetchval("SELECT last_seen FROM blobs")
    assert time.time() - seen < 5
    assert (await env.collect()).blobs_purged == 0


async def test_grace_zero_push_whose_blob_was_swept_is_refused_then_the_retry_succeeds(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    img = random_image()
    for data in img.blobs.values():
        await env.client.upload("lib/app", data)
        assert await env.client.head_blob("lib/app", sha256(data))
    report = await env.collect()  # between the HEADs and the manifest PUT
    assert report.blobs_purged == len(img.blobs)
    status, body = await env.client.put_manifest("lib/app", "v1", img)
    assert status == 400
    error = body["errors"][0]
    assert error["code"] == "MANIFEST_BLOB_UNKNOWN"
    assert set(error["detail"]["digests"]) == set(img.blobs)
    assert await env.client.push("lib/app", "v1", img) == 0  # the client's retry uploads again
    await env.client.pull("lib/app", "v1", img)
    check_consistent(env.data_dir, only_referenced=True)


# -- delete_untagged and dry runs --------------------------------------------------------


async def test_delete_untagged_follows_children_and_referrers_of_live_manifests(gc_env: Start) -> None:
    env = await gc_env(grace_period=100)
    untagged = random_image()
    its_signature = image([os.urandom(40), os.urandom(41)], subject=untagged)
    tagged = random_image()
    tagged_signature = image([os.urandom(42), os.urandom(43)], subject=tagged)
    child = random_image()
    multi = index([child])
    for reference, img in [
        (untagged.digest, untagged),
        (its_signature.digest, its_signature),
        ("v1", tagged),
        (tagged_signature.digest, tagged_signature),
        (child.digest, child),
        ("multi", multi),
    ]:
        await env.client.push("lib/app", reference, img)
    assert (await env.collect(delete_untagged=True)).manifests_purged == 0, "all within grace"

    old = time.time() - 1000
    await env.sql("UPDATE manifests SET pushed_at = ?", (old,))
    await env.sql("UPDATE blobs SET last_seen = ?", (old,))
    dry = await env.collect(delete_untagged=True, dry_run=True)
    real = await env.collect(delete_untagged=True)
    gone = size_of(untagged, its_signature)
    gone += sum(map(len, untagged.blobs.values())) + sum(map(len, its_signature.blobs.values()))
    assert (dry.manifests_purged, dry.blobs_purged, dry.bytes_freed) == (2, 7, gone)
    assert (real.manifests_purged, real.blobs_purged, real.bytes_freed) == (2, 7, gone)
    for reference in (untagged.digest, its_signature.digest):
        assert await status_of(env, "GET", f"/v2/lib/app/manifests/{reference}") == 404
    await env.client.pull("lib/app", "v1", tagged)
    await env.client.pull("lib/app", tagged_signature.digest, tagged_signature)
    await env.client.pull("lib/app", "multi", multi)
    await env.client.pull("lib/app", child.digest, child)
    check_consistent(env.data_dir, only_referenced=True)


async def test_a_dry_run_deletes_nothing_and_reports_what_a_run_frees(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    img = random_image()
    await env.client.push("lib/app", "v1", img)
    await env.client.delete("lib/app", img.digest)
    dry = await env.collect(dry_run=True)
    assert all(env.exists(d) for d in [img.digest, *img.blobs])
    real = await env.collect()
    assert dry.bytes_freed == real.bytes_freed == size_of(img, blobs=tuple(img.blobs.values()))
    assert dry.blobs_purged == real.blobs_purged == 1 + len(img.blobs)


# -- files no row knows, the trash, upload sessions --------------------------------------


async def test_orphan_files_go_after_the_grace_period_and_the_trash_is_recovered(gc_env: Start) -> None:
    env = await gc_env(grace_period=100)
    layout = Layout(env.data_dir)
    old = time.time() - 1000

    def write(path: Path, data: bytes, mtime: float | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        if mtime is not None:
            os.utime(path, (mtime, mtime))

    old_orphan, new_orphan = os.urandom(10), os.urandom(11)
    write(layout.blob(Digest.parse(sha256(old_orphan))), old_orphan, old)
    write(layout.blob(Digest.parse(sha256(new_orphan))), new_orphan)
    write(layout.blobs / "sha256" / "stray.txt", b"x" * 7, old)
    write(layout.tmp / "leftover", b"y" * 5, time.time() - 2 * TMP_MIN_AGE)
    write(layout.tmp / "in-flight", b"z" * 3, old)  # younger than TMP_MIN_AGE: a PUT's
    kept = random_image()
    await env.client.push("lib/app", "v1", kept)
    # A sweep cut off before COMMIT (row still there) and one cut off after it (row gone).
    layer = next(iter(kept.blobs))
    layout.blob(Digest.parse(layer)).rename(layout.trash / f"{layer.split(':')[1]}.deadbeef")
    gone = os.urandom(12)
    write(layout.trash / f"{sha256(gone).split(':')[1]}.cafe", gone)

    report = await env.collect()
    assert (report.trash_restored, report.trash_removed) == (1, 1)
    assert report.orphans_purged == 3
    assert report.bytes_freed == 10 + 7 + 5
    assert not env.exists(sha256(old_orphan)) and env.exists(sha256(new_orphan))
    assert os.listdir(layout.tmp) == ["in-flight"]
    await env.client.pull("lib/app", "v1", kept)


async def test_sha512_orphans_go_and_a_sha512_blob_in_the_trash_is_restored(gc_env: Start) -> None:
    env = await gc_env(grace_period=100)
    layout = Layout(env.data_dir)
    orphan = os.urandom(10)
    path = layout.blob(Digest.parse(digest_of(orphan, "sha512")))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orphan)
    os.utime(path, (time.time() - 1000, time.time() - 1000))
    kept = random_image(algorithm="sha512")
    await env.client.push("lib/app", kept.digest, kept)
    layer = next(iter(kept.blobs))
    layout.blob(Digest.parse(layer)).rename(layout.trash / f"{layer.split(':')[1]}.deadbeef")

    report = await env.collect()

    assert (report.trash_restored, report.orphans_purged, report.bytes_freed) == (1, 1, 10)
    assert not path.exists()
    await env.client.pull("lib/app", kept.digest, kept)
    check_consistent(env.data_dir)


async def test_the_daemon_recovers_the_trash_at_start(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    img = random_image()
    await env.client.push("lib/app", "v1", img)
    layout = Layout(env.data_dir)
    layer = next(iter(img.blobs))
    layout.blob(Digest.parse(layer)).rename(layout.trash / f"{layer.split(':')[1]}.0001")
    again = await gc_env(grace_period=0)
    await again.client.pull("lib/app", "v1", img)
    assert os.listdir(layout.trash) == []


async def test_expired_upload_sessions_go_and_live_ones_stay(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    locations = []
    for _ in range(2):
        async with env.http.post(f"{env.base}/v2/lib/app/blobs/uploads/") as resp:
            assert resp.status == 202
            locations.append(resp.headers["Location"])
    stale_id = locations[0].rsplit("/", 1)[1]
    await env.sql("UPDATE uploads SET updated_at = ? WHERE id = ?", (time.time() - 10 * 24 * 3600, stale_id))
    report = await env.collect()
    assert report.uploads_expired == 1
    assert await status_of(env, "GET", locations[0]) == 404
    assert await status_of(env, "GET", locations[1]) == 204


# -- the API -----------------------------------------------------------------------------


async def wait_for_run(env: Env, location: str) -> dict[str, Any]:
    for _ in range(200):
        async with env.http.get(env.base + location) as resp:
            assert resp.status == 200
            run: dict[str, Any] = await resp.json()
        if run["job_status"] not in ("Pending", "Running"):
            return run
        await asyncio.sleep(0.05)
    raise AssertionError("collection did not finish")


async def test_api_runs_a_collection_now_and_keeps_its_history_and_log(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    img = random_image()
    await env.client.push("lib/app", "v1", img)
    await env.client.delete("lib/app", img.digest)
    body = {"schedule": {"type": "Manual"}, "parameters": {"delete_untagged": False, "dry_run": False}}
    async with env.http.post(f"{env.base}/api/v2.0/system/gc/schedule", json=body) as resp:
        assert resp.status == 201, await resp.text()
        location = resp.headers["Location"]
    run = await wait_for_run(env, location)
    assert run["job_status"] == "Success" and run["job_name"] == "GARBAGE_COLLECTION"
    assert run["job_kind"] == "MANUAL" and run["creation_time"].endswith("Z")
    results = orjson.loads(run["job_parameters"])
    assert results["freed_space"] == size_of(img, blobs=tuple(img.blobs.values()))
    assert results["purged_blobs"] == 1 + len(img.blobs)
    async with env.http.get(f"{env.base}{location}/log") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        text = await resp.text()
    assert "blob deleted: " + img.digest in text and "freed" in text
    async with env.http.get(f"{env.base}/api/v2.0/system/gc", params={"page_size": "5"}) as resp:
        assert resp.status == 200 and resp.headers["X-Total-Count"] == "1"
        assert [r["id"] for r in await resp.json()] == [run["id"]]
    assert await status_of(env, "GET", "/api/v2.0/system/gc/999") == 404


async def test_api_sets_and_reads_the_schedule(gc_env: Start) -> None:
    env = await gc_env()
    url = f"{env.base}/api/v2.0/system/gc/schedule"
    async with env.http.get(url) as resp:
        assert (await resp.json())["schedule"]["type"] == "None"
    body = {"schedule": {"type": "Daily"}, "parameters": {"delete_untagged": True, "workers": 3}}
    async with env.http.put(url, json=body) as resp:
        assert resp.status == 200, await resp.text()
    async with env.http.get(url) as resp:
        schedule = await resp.json()
    assert schedule["schedule"]["cron"] == "0 0 0 * * *"
    assert schedule["schedule"]["next_scheduled_time"].endswith("T00:00:00.000Z")
    custom = {"schedule": {"type": "Custom", "cron": "0 30 2 * * 1-5"}}
    async with env.http.put(url, json=custom) as resp:
        assert resp.status == 200
    async with env.http.get(url) as resp:
        assert (await resp.json())["schedule"]["cron"] == "0 30 2 * * 1-5"
    async with env.http.put(url, json={"schedule": {"type": "None"}}) as resp:
        assert resp.status == 200
    async with env.http.get(url) as resp:
        assert (await resp.json())["schedule"]["type"] == "None"


@pytest.mark.parametrize(
    "body",
    [
        {"schedule": {"type": "Custom", "cron": "0 0 * * *"}},
        {"schedule": {"type": "Custom", "cron": "5 0 0 * * *"}},
        {"schedule": {"type": "Custom", "cron": "0 0 25 * * *"}},
        {"schedule": {"type": "Sometimes"}},
        {"schedule": {"type": "Manual"}, "parameters": {"workers": 11}},
        {"schedule": {"type": "Manual"}, "parameters": {"dry_run": "yes"}},
        {"parameters": {}},
    ],
)
async def test_api_refuses_bad_schedules_and_parameters_with_400(gc_env: Start, body: dict[str, Any]) -> None:
    env = await gc_env()
    async with env.http.post(f"{env.base}/api/v2.0/system/gc/schedule", json=body) as resp:
        assert resp.status == 400, await resp.text()
        assert (await resp.json())["errors"][0]["code"] == "BAD_REQUEST"


async def test_api_refuses_a_second_collection_while_one_runs(gc_env: Start) -> None:
    env = await gc_env()
    fd = fsio.try_lock_sync(Layout(env.data_dir).gc_lock)  # as if `regd gc` were running
    assert fd is not None
    try:
        body = {"schedule": {"type": "Manual"}}
        async with env.http.post(f"{env.base}/api/v2.0/system/gc/schedule", json=body) as resp:
            assert resp.status == 409
            assert (await resp.json())["errors"][0]["code"] == "CONFLICT"
        async with env.http.get(f"{env.base}/api/v2.0/system/gc") as resp:
            assert resp.status == 200
            assert await resp.json() == [], "a refused collection left a run in the history"
    finally:
        fsio.unlock_sync(fd)


async def test_api_stops_a_running_collection_between_batches(
    gc_env: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REGD_TESTHOOK_GC_SWEEP_DELAY", "0.01")
    env = await gc_env(grace_period=0)
    for _ in range(3):
        img = random_image(layers=150, size=10)
        await env.client.push("lib/big", "v1", img)
        await env.client.delete("lib/big", img.digest)
    async with env.http.post(
        f"{env.base}/api/v2.0/system/gc/schedule", json={"schedule": {"type": "Manual"}}
    ) as resp:
        location = resp.headers["Location"]
    await asyncio.sleep(0.3)
    assert await status_of(env, "PUT", location) == 200
    run = await wait_for_run(env, location)
    assert run["job_status"] == "Stopped"
    check_consistent(env.data_dir)
    monkeypatch.delenv("REGD_TESTHOOK_GC_SWEEP_DELAY")  # the next collection at full speed
    assert (await env.collect()).blobs_purged > 0, "the rest is collected next time"
    check_consistent(env.data_dir, only_referenced=True)


async def test_the_scheduler_runs_a_collection_when_due(
    gc_env: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    def soon(self: cron.Cron, moment: datetime) -> datetime:
        return moment + timedelta(seconds=0.2)

    monkeypatch.setattr(cron.Cron, "next_after", soon)
    env = await gc_env(grace_period=0)
    body = {"schedule": {"type": "Hourly"}, "parameters": {"delete_untagged": False}}
    async with env.http.put(f"{env.base}/api/v2.0/system/gc/schedule", json=body) as resp:
        assert resp.status == 200
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        runs, _ = await env.gc.history(0, 10)
        if runs and runs[0].status not in ("Pending", "Running"):
            break
        await asyncio.sleep(0.05)
    assert runs and runs[0].kind == "SCHEDULE" and runs[0].schedule_type == "Hourly"
    assert runs[0].status == "Success", runs[0]


# -- the command line --------------------------------------------------------------------


async def test_regd_gc_dry_run_reports_and_deletes_nothing_then_a_run_frees(gc_env: Start) -> None:
    env = await gc_env(grace_period=0)
    img = random_image()
    await env.client.push("lib/app", "v1", img)
    await env.client.delete("lib/app", img.digest)
    freed = size_of(img, blobs=tuple(img.blobs.values()))
    code, out, err = await run_regd_gc(env.data_dir, "--dry-run")
    assert code == 0, err
    assert "dry run, could free" in out and f"({freed} bytes)" in out
    assert all(env.exists(d) for d in [img.digest, *img.blobs])
    code, out, err = await run_regd_gc(env.data_dir)
    assert code == 0 and "freed" in out and f"({freed} bytes)" in out, (out, err)
    check_consistent(env.data_dir, only_referenced=True)


async def test_regd_gc_exits_1_while_another_collection_runs(tmp_path: Path) -> None:
    layout = Layout(tmp_path / "data")
    layout.root.mkdir(parents=True)
    fd = fsio.try_lock_sync(layout.gc_lock)
    assert fd is not None
    try:
        code, _, err = await run_regd_gc(layout.root)
    finally:
        fsio.unlock_sync(fd)
    assert code == 1 and "another garbage collection is running" in err


async def test_api_is_for_system_administrators_only(
    aiohttp_client: Callable[..., Awaitable[Any]], tmp_path: Path
) -> None:
    overrides: dict[str, dict[str, Any]] = {"storage": {"data_dir": str(tmp_path / "data"), "fsync": False}}
    client = await aiohttp_client(create_app(load_config(None, environ={}, overrides=overrides)))
    for method, path in [
        ("GET", "/api/v2.0/system/gc"),
        ("POST", "/api/v2.0/system/gc/schedule"),
        ("PUT", "/api/v2.0/system/gc/schedule"),
        ("GET", "/api/v2.0/system/gc/1/log"),
        ("PUT", "/api/v2.0/system/gc/1"),
    ]:
        resp = await client.request(method, path, json={"schedule": {"type": "Manual"}})
        assert resp.status == 401, (method, path, resp.status)


async def test_api_refuses_a_logged_in_user_who_is_not_an_administrator(auth_client: Any) -> None:
    await create_user(auth_client, "alice")
    for method, path in [
        ("GET", "/api/v2.0/system/gc"),
        ("POST", "/api/v2.0/system/gc/schedule"),
        ("PUT", "/api/v2.0/system/gc/schedule"),
        ("GET", "/api/v2.0/system/gc/schedule"),
        ("PUT", "/api/v2.0/system/gc/1"),
    ]:
        resp = await auth_client.request(
            method, path, json={"schedule": {"type": "Manual"}}, headers=basic("alice")
        )
        assert resp.status == 403, (method, path, resp.status)
    history = await auth_client.get("/api/v2.0/system/gc", headers=ADMIN)
    assert await history.json() == [], "a refused request started a collection"


# -- the protocol, step by step ----------------------------------------------------------


Hook = Callable[[Env], list[Report]]


@pytest.fixture
def sweep_after_place(monkeypatch: pytest.MonkeyPatch) -> Hook:
    """Run a whole collection right after each commit links its file into blobs/ and
    before its transaction records the row (the worst moment for a sweep), with the file
    made old enough to be swept as an orphan; returns the collections' reports."""

    def install(env: Env) -> list[Report]:
        place = BlobStore.place
        linked: set[Path] = set()
        reports: list[Report] = []

        async def place_then_collect(self: BlobStore, src: Path, digest: Digest) -> None:
            await place(self, src, digest)
            if src in linked:  # BlobStore.confirm's re-link, inside the transaction
                return
            linked.add(src)
            # Past the grace period (100 s in these tests), not past TMP_MIN_AGE: the file
            # is a hard link of the commit's own copy, which a PUT in flight keeps in tmp/.
            old = time.time() - TMP_MIN_AGE / 2
            os.utime(self.path(digest), (old, old))
            reports.append(await env.collect())

        monkeypatch.setattr(BlobStore, "place", place_then_collect)
        return reports

    return install


async def test_a_commit_puts_back_the_file_a_sweep_took_between_link_and_record(
    gc_env: Start, sweep_after_place: Hook
) -> None:
    env = await gc_env(grace_period=100)
    reports = sweep_after_place(env)
    img = random_image()
    for data in img.blobs.values():
        await env.client.upload("lib/app", data)
        assert await env.client.head_blob("lib/app", sha256(data))
    assert await env.client.push("lib/app", "v1", img) == 0
    assert [r.orphans_purged for r in reports] == [1] * (len(img.blobs) + 1), "each file was swept"
    await env.client.pull("lib/app", "v1", img)
    check_consistent(env.data_dir, only_referenced=True)


async def test_re_uploading_a_blob_being_swept_keeps_row_and_file_together(
    gc_env: Start, sweep_after_place: Hook
) -> None:
    env = await gc_env(grace_period=0)
    data = os.urandom(2048)
    await env.client.upload("lib/app", data)  # a row, unreferenced: the next sweep takes it
    reports = sweep_after_place(env)
    await env.client.upload("lib/app", data)  # link finds the file; the sweep takes row and file
    assert [r.blobs_purged for r in reports] == [1]
    assert await env.client.head_blob("lib/app", sha256(data))
    async with env.http.get(f"{env.base}/v2/lib/app/blobs/{sha256(data)}") as resp:
        assert resp.status == 200 and await resp.read() == data
    check_consistent(env.data_dir)


async def test_management_api_deletes_then_a_collection(gc_env: Start) -> None:
    """Harbor's paths: a tag, an artifact by tag, a repository; then a collection frees
    what nothing references and the rest pulls intact."""
    env = await gc_env(grace_period=0)
    async with env.http.post(f"{env.base}/api/v2.0/projects", json={"project_name": "team"}) as resp:
        assert resp.status == 201, await resp.text()
    shared = os.urandom(3000)
    kept = image([os.urandom(100), shared])
    by_tag = image([os.urandom(101), shared, os.urandom(700)])
    whole = image([os.urandom(102), os.urandom(900)])
    await env.client.push("team/app", "kept", kept)
    await env.client.push("team/app", "also", kept)
    await env.client.push("team/app", "doomed", by_tag)
    await env.client.push("team/other", "v1", whole)
    api = f"{env.base}/api/v2.0/projects/team/repositories"
    for path in ["app/artifacts/kept/tags/also", "app/artifacts/doomed", "other"]:
        async with env.http.delete(f"{api}/{path}") as resp:
            assert resp.status == 200, (path, await resp.text())
    assert await status_of(env, "GET", "/v2/team/app/manifests/also") == 404
    assert await status_of(env, "GET", f"/v2/team/app/manifests/{by_tag.digest}") == 404
    assert await status_of(env, "GET", "/v2/team/other/manifests/v1") == 404
    report = await env.collect()
    unique = [b for b in by_tag.blobs.values() if b is not shared]
    expected = size_of(by_tag, whole, blobs=(*unique, *whole.blobs.values()))
    assert report.bytes_freed == expected
    await env.client.pull("team/app", "kept", kept)
    check_consistent(env.data_dir, only_referenced=True)
