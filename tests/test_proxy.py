"""Proxy-cache projects (issue 11): regd in front of a real upstream regd (token auth, its
realm on another loopback address) through the fault-injecting proxy, and in front of
CNCF distribution with Basic auth."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import stat
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestServer

from regd.api import observe
from regd.app import create_app
from regd.digest import Digest
from regd.gc import Parameters
from regd.proxy import retention
from regd.proxy.limits import Pacer
from regd.services import SERVICES
from tests.conftest import Client, assert_error, image_manifest, make_config, sha256
from tests.proxy_support import (
    OCI_MANIFEST,
    FaultProxy,
    Mode,
    Upstream,
    push,
    random_image,
    upstream_distribution,
    upstream_regd,
)
from tests.regd_process import RegdProcess

API = "/api/v2.0"
PROXY_SETTINGS = {"connect_timeout": 1.0, "read_timeout": 2.0, "probe_interval": 0.3}


@pytest.fixture(scope="module")
def upstream_process(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Upstream, RegdProcess]]:
    with upstream_regd(tmp_path_factory.mktemp("upstream")) as found:
        yield found


@pytest.fixture
def upstream(upstream_process: tuple[Upstream, RegdProcess]) -> Upstream:
    return upstream_process[0]


@pytest.fixture
async def fault(upstream: Upstream) -> AsyncIterator[FaultProxy]:
    host, port = upstream.url.removeprefix("http://").rsplit(":", 1)
    proxy = FaultProxy(host, int(port))
    await proxy.start()
    yield proxy
    await proxy.stop()


async def add_proxy_project(
    client: Client | aiohttp.ClientSession,
    url: str,
    upstream: Upstream,
    project: str = "hub",
    **metadata: str,
) -> int:
    resp = await client.post(
        f"{API}/registries",
        json={
            "name": f"up-{project}",
            "type": "docker-registry",
            "url": url,
            "credential": {
                "type": "basic",
                "access_key": upstream.username,
                "access_secret": upstream.password,
            },
        },
    )
    assert resp.status == 201, await resp.text()
    registry_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    resp = await client.post(
        f"{API}/projects",
        json={
            "project_name": project,
            "registry_id": registry_id,
            "metadata": {"public": "true", **metadata},
        },
    )
    assert resp.status == 201, await resp.text()
    return registry_id


async def start(aiohttp_client: Callable[..., Awaitable[Client]], data_dir: Path, **proxy: float) -> Client:
    """The app as ``regd serve`` runs it: with its access logger (hit or miss)."""
    server = TestServer(create_app(make_config(data_dir, proxy={**PROXY_SETTINGS, **proxy})))
    await server.start_server(**observe.runner_options())
    return await aiohttp_client(server)


@pytest.fixture
async def regd(
    aiohttp_client: Callable[..., Awaitable[Client]], data_dir: Path, fault: FaultProxy, upstream: Upstream
) -> Client:
    client = await start(aiohttp_client, data_dir)
    await add_proxy_project(client, fault.url, upstream)
    return client


def unique(name: str) -> str:
    return f"library/{name}-{os.urandom(4).hex()}"


async def get_body(client: Client, path: str, **kw: Any) -> tuple[int, bytes, Any]:
    resp = await client.get(path, **kw)
    return resp.status, await resp.read(), resp.headers


async def until(check: Callable[[], Awaitable[bool]], within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not await check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


# -- registry endpoints ------------------------------------------------------------------


async def test_registry_secret_is_never_returned_and_the_database_is_private(
    regd: Client, data_dir: Path
) -> None:
    listed = await (await regd.get(f"{API}/registries")).json()
    assert listed[0]["credential"] == {"type": "basic", "access_key": "admin", "access_secret": "*****"}
    one = await (await regd.get(f"{API}/registries/{listed[0]['id']}")).json()
    assert one["credential"]["access_secret"] == "*****"
    assert stat.S_IMODE((data_dir / "regd.db").stat().st_mode) == 0o600
    # A PUT that sends the mask back keeps the stored secret: the ping still logs in.
    resp = await regd.put(
        f"{API}/registries/{one['id']}", json={"description": "x", "credential": {"access_secret": "*****"}}
    )
    assert resp.status == 200, await resp.text()
    resp = await regd.post(f"{API}/registries/ping", json={"id": one["id"]})
    assert resp.status == 200, await resp.text()


async def test_ping_with_a_wrong_password_fails_and_a_used_registry_cannot_be_deleted(
    regd: Client, fault: FaultProxy
) -> None:
    resp = await regd.post(
        f"{API}/registries/ping",
        json={
            "type": "docker-registry",
            "url": fault.url,
            "credential": {"type": "basic", "access_key": "admin", "access_secret": "wrong"},
        },
    )
    await assert_error(resp, 400, "BAD_REQUEST")
    registry_id = (await (await regd.get(f"{API}/registries")).json())[0]["id"]
    await assert_error(await regd.delete(f"{API}/registries/{registry_id}"), 412, "PRECONDITION")
    project = await (await regd.get(f"{API}/projects/hub", headers={"X-Is-Resource-Name": "true"})).json()
    assert project["registry_id"] == registry_id


async def test_bad_registry_bodies_are_refused(regd: Client) -> None:
    for body in (
        {"name": "a", "type": "nope", "url": "http://x"},
        {"name": "b", "type": "harbor", "url": "ftp://x"},
    ):
        await assert_error(await regd.post(f"{API}/registries", json=body), 400, "BAD_REQUEST")
    resp = await regd.post(f"{API}/registries", json={"name": "up-hub", "type": "harbor", "url": "http://x"})
    await assert_error(resp, 409, "CONFLICT")
    resp = await regd.post(f"{API}/projects", json={"project_name": "p2", "registry_id": 999})
    await assert_error(resp, 400, "BAD_REQUEST")


# -- pulling through ---------------------------------------------------------------------


async def test_pull_through_then_everything_cached_is_served_while_the_upstream_refuses(
    regd: Client, upstream: Upstream, fault: FaultProxy
) -> None:
    name = unique("app")
    blobs = random_image()
    digest, manifest = await push(upstream, name, "v1", blobs)
    status, body, headers = await get_body(regd, f"/v2/hub/{name}/manifests/v1")
    assert status == 200 and body == manifest and headers["Docker-Content-Digest"] == digest, body
    for blob in blobs:
        status, body, _ = await get_body(regd, f"/v2/hub/{name}/blobs/{sha256(blob)}")
        assert status == 200 and body == blob
    assert (await (await regd.get(f"/v2/hub/{name}/tags/list")).json())["tags"] == ["v1"]

    fault.mode = Mode.REFUSE
    status, body, headers = await get_body(regd, f"/v2/hub/{name}/manifests/v1")
    assert status == 200 and body == manifest
    resp = await regd.head(f"/v2/hub/{name}/manifests/v1")
    assert resp.status == 200 and resp.headers["Docker-Content-Digest"] == digest
    for blob in blobs:
        status, body, _ = await get_body(regd, f"/v2/hub/{name}/blobs/{sha256(blob)}")
        assert status == 200 and body == blob
    assert (await (await regd.get(f"/v2/hub/{name}/tags/list")).json())["tags"] == ["v1"]
    # What the cache lacks cannot be served: a clear 503, not a hang or a traceback.
    await assert_error(await regd.get(f"/v2/hub/{name}/manifests/v2"), 503, "UNAVAILABLE")

    metrics = await (await regd.get("/metrics")).text()
    assert 'regd_proxy_cache_hits_total{kind="blob"}' in metrics
    assert 'regd_proxy_cache_misses_total{kind="manifest"}' in metrics
    assert "regd_proxy_upstream_received_bytes_total" in metrics


@pytest.mark.parametrize("mode", [Mode.UNAVAILABLE, Mode.RATE_LIMITED])
async def test_an_upstream_answering_503_or_429_gives_the_cache_by_tag(
    regd: Client, upstream: Upstream, fault: FaultProxy, mode: Mode
) -> None:
    name = unique(f"answers-{mode.value}")
    blobs = random_image(1000)
    digest, manifest = await push(upstream, name, "v1", blobs)
    assert (await regd.get(f"/v2/hub/{name}/manifests/v1")).status == 200
    assert (await regd.get(f"/v2/hub/{name}/blobs/{sha256(blobs[1])}")).status == 200
    fault.mode = mode
    status, body, headers = await get_body(regd, f"/v2/hub/{name}/manifests/v1")
    assert status == 200 and body == manifest and headers["Docker-Content-Digest"] == digest, body
    assert (await get_body(regd, f"/v2/hub/{name}/blobs/{sha256(blobs[1])}"))[1] == blobs[1]
    # Not cached: the upstream's refusal, as 503 naming it.
    await assert_error(await regd.get(f"/v2/hub/{name}/blobs/{sha256(blobs[2])}"), 503, "UNAVAILABLE")


async def test_a_dead_upstream_is_not_asked_again_until_a_probe_finds_it_back(
    regd: Client, upstream: Upstream, fault: FaultProxy, data_dir: Path
) -> None:
    name = unique("dead")
    await push(upstream, name, "v1", random_image(1000))
    assert (await regd.get(f"/v2/hub/{name}/manifests/v1")).status == 200
    await fault.stop()  # connections refused
    assert (await regd.get(f"/v2/hub/{name}/manifests/v1")).status == 200  # finds it dead

    async def status(wanted: str) -> bool:
        found = await (await regd.get(f"{API}/registries")).json()
        return bool(found[0]["status"] == wanted)

    await until(lambda: status("unhealthy"))
    fault.mode = Mode.REFUSE
    await fault.start()  # listening again, but every connection is dropped
    before = fault.connections
    for _ in range(5):
        assert (await regd.get(f"/v2/hub/{name}/manifests/v1")).status == 200
    # Requests did not go upstream (only background probes may have, on their own clock).
    fault.mode = Mode.PASS
    await until(lambda: status("healthy"))
    assert fault.connections - before <= 1 + int(20 / PROXY_SETTINGS["probe_interval"])


async def test_a_stalled_upstream_holds_a_cached_tag_no_longer_than_the_connect_timeout(
    aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path, upstream: Upstream, fault: FaultProxy
) -> None:
    # Blob transfers may stall for read_timeout (120 s here); a tag's freshness check is
    # given 2 x connect_timeout (2 s), then the cache answers.
    client = await start(aiohttp_client, tmp_path / "d", read_timeout=120.0)
    await add_proxy_project(client, fault.url, upstream)
    name = unique("stalled")
    _digest, manifest = await push(upstream, name, "v1", random_image(1000))
    assert (await client.get(f"/v2/hub/{name}/manifests/v1")).status == 200
    fault.mode, fault.fault_at = Mode.STALL, 0
    answer = await asyncio.wait_for(get_body(client, f"/v2/hub/{name}/manifests/v1"), 60)
    assert answer[0] == 200 and answer[1] == manifest


async def test_a_tag_moved_upstream_is_pulled_with_its_new_digest(regd: Client, upstream: Upstream) -> None:
    name = unique("moving")
    first, _ = await push(upstream, name, "latest", random_image(1000))
    resp = await regd.get(f"/v2/hub/{name}/manifests/latest")
    assert resp.headers["Docker-Content-Digest"] == first
    second, manifest = await push(upstream, name, "latest", random_image(1000))
    assert second != first
    status, body, headers = await get_body(regd, f"/v2/hub/{name}/manifests/latest")
    assert status == 200 and body == manifest and headers["Docker-Content-Digest"] == second
    # The old content stays pullable by digest from the cache.
    assert (await regd.get(f"/v2/hub/{name}/manifests/{first}")).status == 200


async def test_a_large_manifest_arrives_whole(regd: Client, upstream: Upstream) -> None:
    name = unique("large")
    blobs = random_image(1000)
    async with aiohttp.ClientSession(headers=upstream.auth()) as session:
        for blob in blobs:
            resp = await session.post(
                f"{upstream.url}/v2/{name}/blobs/uploads/", params={"digest": sha256(blob)}, data=blob
            )
            assert resp.status == 201
        manifest = image_manifest(
            (sha256(blobs[0]), len(blobs[0])),
            [(sha256(b), len(b)) for b in blobs[1:]],
            annotations={"note": "x" * 600_000},  # many reads of the upstream's answer
        )
        resp = await session.put(
            f"{upstream.url}/v2/{name}/manifests/v1", data=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert resp.status == 201, await resp.text()
    status, body, _ = await get_body(regd, f"/v2/hub/{name}/manifests/v1")
    assert status == 200 and body == manifest


async def test_head_by_tag_records_the_tag_and_get_by_digest_is_a_hit(
    regd: Client, upstream: Upstream, fault: FaultProxy, caplog: pytest.LogCaptureFixture
) -> None:
    name = unique("docker")
    digest, manifest = await push(upstream, name, "v1", random_image(1000))
    caplog.set_level(logging.INFO, logger="regd.access")
    resp = await regd.head(f"/v2/hub/{name}/manifests/v1")
    assert resp.status == 200 and resp.headers["Docker-Content-Digest"] == digest
    status, body, _ = await get_body(regd, f"/v2/hub/{name}/manifests/{digest}")
    assert status == 200 and body == manifest
    fault.mode = Mode.REFUSE
    assert (await regd.get(f"/v2/hub/{name}/manifests/v1")).status == 200  # the tag was recorded
    lines = [r.getMessage() for r in caplog.records if f"/v2/hub/{name}/manifests" in r.getMessage()]
    assert any("cache=miss" in line for line in lines) and any("cache=hit" in line for line in lines), lines


async def test_upstream_404_is_404_unless_local_on_not_found(
    aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path, upstream: Upstream, fault: FaultProxy
) -> None:
    client = await start(aiohttp_client, tmp_path / "d")
    await add_proxy_project(client, fault.url, upstream, "strict")
    await add_proxy_project(client, fault.url, upstream, "lenient", proxy_cache_local_on_not_found="true")
    name = unique("gone")
    await push(upstream, name, "v1", random_image(1000))
    for project in ("strict", "lenient"):
        assert (await client.get(f"/v2/{project}/{name}/manifests/v1")).status == 200
    async with aiohttp.ClientSession(headers=upstream.auth()) as session:
        resp = await session.delete(f"{upstream.url}/api/v2.0/projects/library/repositories/{name[8:]}")
        assert resp.status == 200, await resp.text()
    await assert_error(await client.get(f"/v2/strict/{name}/manifests/v1"), 404, "MANIFEST_UNKNOWN")
    assert (await client.get(f"/v2/lenient/{name}/manifests/v1")).status == 200


async def test_tag_lists_merge_the_upstream_and_the_cache(
    regd: Client, upstream: Upstream, fault: FaultProxy
) -> None:
    name = unique("tags")
    await push(upstream, name, "a", random_image(1000))
    assert (await regd.get(f"/v2/hub/{name}/manifests/a")).status == 200
    await push(upstream, name, "b", random_image(1000))
    assert (await (await regd.get(f"/v2/hub/{name}/tags/list")).json())["tags"] == ["a", "b"]
    fault.mode = Mode.REFUSE
    assert (await (await regd.get(f"/v2/hub/{name}/tags/list")).json())["tags"] == ["a"]


async def test_head_of_a_blob_not_cached_is_answered_from_the_upstream(
    regd: Client, upstream: Upstream
) -> None:
    name = unique("head")
    blobs = random_image(4321)
    await push(upstream, name, "v1", blobs)
    resp = await regd.head(f"/v2/hub/{name}/blobs/{sha256(blobs[1])}")
    assert resp.status == 200 and resp.headers["Content-Length"] == "4321"
    services = regd.server.app[SERVICES]
    assert await services.db.fetchval("SELECT count(*) FROM blobs WHERE digest = ?", (sha256(blobs[1]),)) == 0


# -- the blob download ------------------------------------------------------------------


async def _hash_of(client: Client | aiohttp.ClientSession, path: str) -> tuple[int, int, str]:
    resp = await client.get(path)
    hasher = hashlib.sha256()
    total = 0
    async for chunk in resp.content.iter_chunked(1 << 20):
        hasher.update(chunk)
        total += len(chunk)
    return resp.status, total, "sha256:" + hasher.hexdigest()


def _memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for {pid}")


@asynccontextmanager
async def proxy_daemon(
    tmp_path: Path, fault: FaultProxy, upstream: Upstream
) -> AsyncIterator[tuple[RegdProcess, aiohttp.ClientSession]]:
    """``regd serve`` with two worker processes (clients' connections land on both, and
    the worker that did not start a download serves the other's: regd/proxy/fetch.py),
    its proxy project ``hub`` of the upstream behind the fault proxy, and a client."""
    (tmp_path / "proxy").mkdir()
    daemon = RegdProcess(tmp_path / "proxy", {"proxy": PROXY_SETTINGS, "server": {"workers": 2}})
    daemon.start()
    try:
        async with aiohttp.ClientSession(base_url=f"http://127.0.0.1:{daemon.port}") as client:
            await add_proxy_project(client, fault.url, upstream)
            yield daemon, client
    finally:
        daemon.close()


def _family_kib(pid: int, field: str) -> int:
    """``field`` of a process and its children (the supervisor and its workers), summed."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(_memory_kib(p, field) for p in [pid, *map(int, children)])


async def test_eight_concurrent_cold_pulls_of_a_256_mib_blob_download_it_once_in_bounded_memory(
    upstream: Upstream, fault: FaultProxy, tmp_path: Path
) -> None:
    """The proxy runs as ``regd serve`` here, so that its peak memory is its own (the
    supervisor's and its two workers' resident sizes, summed)."""
    name = unique("big")
    size = 256 * 1024 * 1024
    big = os.urandom(size)
    blobs = [os.urandom(100), big]
    await push(upstream, name, "v1", blobs)
    digest = sha256(big)
    del blobs, big
    async with proxy_daemon(tmp_path, fault, upstream) as (daemon, client):
        before = fault.forwarded
        resting = _family_kib(daemon.pid, "VmRSS")
        path = f"/v2/hub/{name}/blobs/{digest}"
        results = await asyncio.gather(*[_hash_of(client, path) for _ in range(8)])
        assert results == [(200, size, digest)] * 8
        served = fault.forwarded - before
        assert size <= served < size + 1024 * 1024, f"upstream sent {served} bytes for one {size}-byte blob"
        peak = _family_kib(daemon.pid, "VmHWM")
        assert peak - resting < 32 * 1024, f"regd's processes grew from {resting} KiB to a peak of {peak} KiB"
        assert await _hash_of(client, path) == (200, size, digest)
        assert fault.forwarded - before == served  # the cache answered
        workers = {
            line.split("pid=")[1].split()[0] for line in daemon.log().splitlines() if "cache=miss" in line
        }
        print(f"cold pulls answered by workers {sorted(workers)}")


async def _outcome(client: aiohttp.ClientSession, path: str) -> tuple[int, int] | None:
    """(status, bytes received), or None when the response was cut short."""
    try:
        resp = await client.get(path)
        return resp.status, len(await resp.read())
    except aiohttp.ClientPayloadError:
        return None


async def test_a_corrupt_download_led_by_one_worker_is_cut_short_in_every_worker(
    upstream: Upstream, fault: FaultProxy, tmp_path: Path
) -> None:
    name = unique("corrupt-workers")
    blobs = random_image(3_000_000, layers=1)
    await push(upstream, name, "v1", blobs)
    path = f"/v2/hub/{name}/blobs/{sha256(blobs[1])}"
    async with proxy_daemon(tmp_path, fault, upstream) as (_daemon, client):
        fault.mode, fault.fault_at = Mode.FLIP, 2_000_000
        results = await asyncio.gather(*[_outcome(client, path) for _ in range(6)])
        assert all(r is None or r != (200, len(blobs[1])) for r in results), results
        fault.mode = Mode.PASS

        async def pulls() -> bool:
            got = await client.get(path)
            return got.status == 200 and await got.read() == blobs[1]

        await until(pulls)


async def _pull_fails_and_nothing_is_cached(regd: Client, name: str, blob: bytes) -> None:
    digest = sha256(blob)
    path = f"/v2/hub/{name}/blobs/{digest}"
    try:
        resp = await regd.get(path)
        body = await resp.read()
    except aiohttp.ClientPayloadError:
        pass  # cut short: what a client sees of a failed download
    else:
        assert not (resp.status == 200 and len(body) == len(blob)), "a complete 200 with wrong bytes"
    services = regd.server.app[SERVICES]
    assert await services.db.fetchval("SELECT count(*) FROM blobs WHERE digest = ?", (digest,)) == 0
    assert not services.store.path(Digest.parse(digest)).exists()


@pytest.mark.parametrize("mode", [Mode.FLIP, Mode.CUT, Mode.STALL])
async def test_a_corrupt_truncated_or_stalled_upstream_blob_is_cut_short_and_never_cached(
    regd: Client, upstream: Upstream, fault: FaultProxy, mode: Mode
) -> None:
    name = unique(mode.value)
    blobs = random_image(3_000_000, layers=1)
    await push(upstream, name, "v1", blobs)
    assert (await regd.get(f"/v2/hub/{name}/manifests/v1")).status == 200
    fault.mode, fault.fault_at = mode, 1_500_000
    await _pull_fails_and_nothing_is_cached(regd, name, blobs[1])
    fault.mode = Mode.PASS
    await asyncio.sleep(0)  # (no synchronisation: the next pull starts a new download)

    async def pulls() -> bool:
        status, body, _ = await get_body(regd, f"/v2/hub/{name}/blobs/{sha256(blobs[1])}")
        return status == 200 and body == blobs[1]

    await until(pulls)


async def test_max_upstream_conn_refuses_more_transfers_with_429(
    aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path, upstream: Upstream, fault: FaultProxy
) -> None:
    client = await start(aiohttp_client, tmp_path / "d")
    await add_proxy_project(client, fault.url, upstream, "capped", max_upstream_conn="1")
    name = unique("capped")
    blobs = random_image(2_000_000)
    await push(upstream, name, "v1", blobs)
    fault.mode, fault.rate = Mode.THROTTLE, 1_000_000
    first = asyncio.create_task(_hash_of(client, f"/v2/capped/{name}/blobs/{sha256(blobs[1])}"))
    services = client.server.app[SERVICES]
    await until(lambda: _true(not services.proxy.cap.available("capped", 1)))
    body = await assert_error(
        await client.get(f"/v2/capped/{name}/blobs/{sha256(blobs[2])}"), 429, "TOO_MANY_REQUEST"
    )
    assert body["errors"][0]["message"] == "too many requests to upstream registry"
    assert (await first)[0] == 200


async def _true(value: bool) -> bool:
    return value


async def test_pacer_sleeps_to_keep_under_proxy_speed_kb(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)
    pacer = Pacer(100)  # KiB/s
    await pacer.pace(200 * 1024)
    assert slept and 1.5 < slept[0] <= 2.0
    unlimited = Pacer(-1)
    slept.clear()
    await unlimited.pace(10**9)
    assert slept == []


# -- pushes are refused -------------------------------------------------------------------


async def test_push_tag_creation_into_a_proxy_project_are_denied(regd: Client, upstream: Upstream) -> None:
    message = "denied: can not push artifact to a proxy project: hub"
    body = await assert_error(await regd.post("/v2/hub/x/blobs/uploads/"), 403, "DENIED")
    assert body["errors"][0]["message"] == message
    resp = await regd.put("/v2/hub/x/manifests/v1", data=b"{}", headers={"Content-Type": "application/json"})
    assert (await assert_error(resp, 403, "DENIED"))["errors"][0]["message"] == message
    name = unique("tagme")
    digest, _ = await push(upstream, name, "v1", random_image(1000))
    assert (await regd.get(f"/v2/hub/{name}/manifests/v1")).status == 200
    repo = name.replace("/", "%252F")
    resp = await regd.post(
        f"{API}/projects/hub/repositories/{repo}/artifacts/{digest}/tags", json={"name": "new"}
    )
    assert (await assert_error(resp, 403, "DENIED"))["errors"][0]["message"] == message


# -- retention ---------------------------------------------------------------------------


async def test_artifacts_not_pulled_for_the_retention_days_are_removed_then_collected(
    regd: Client, upstream: Upstream
) -> None:
    old, kept = unique("old"), unique("kept")
    old_blobs, kept_blobs = random_image(1000), random_image(1000)
    await push(upstream, old, "v1", old_blobs)
    await push(upstream, kept, "v1", kept_blobs)
    for name, blobs in ((old, old_blobs), (kept, kept_blobs)):
        assert (await regd.get(f"/v2/hub/{name}/manifests/v1")).status == 200
        assert (await regd.get(f"/v2/hub/{name}/blobs/{sha256(blobs[1])}")).status == 200
    services = regd.server.app[SERVICES]
    now = time.time()
    # Five days on, ``kept`` is pulled again (recorded as regd/pulls.py records pulls).
    services.pulls.record(await services.registry.resolve(f"hub/{kept}", "v1"), "v1", when=now + 5 * 86400)
    await services.pulls.flush()
    assert await retention.remove_unpulled(services.db, services.registry, 7, now=now) == 0
    assert await retention.remove_unpulled(services.db, services.registry, 7, now=now + 8 * 86400) == 1
    count = "SELECT count(*) FROM manifests m JOIN repositories r ON r.id = m.repository_id WHERE r.name = ?"
    assert await services.db.fetchval(count, (f"hub/{old}",)) == 0
    assert await services.db.fetchval(count, (f"hub/{kept}",)) == 1
    _run_id, report = await services.gc.run(Parameters(), grace_period=0.0)
    assert not services.store.path(Digest.parse(sha256(old_blobs[1]))).exists(), report.summary()
    assert services.store.path(Digest.parse(sha256(kept_blobs[1]))).exists()


# -- distribution upstream with Basic auth ------------------------------------------------


async def test_pull_through_from_distribution_with_basic_auth(
    aiohttp_client: Callable[..., Awaitable[Client]], tmp_path: Path
) -> None:
    with upstream_distribution(tmp_path / "distribution") as dist:
        name = "team/app"
        blobs = random_image(50_000)
        digest, manifest = await push(dist, name, "v1", blobs)
        client = await start(aiohttp_client, tmp_path / "d")
        await add_proxy_project(client, dist.url, dist, "dist")
        status, body, headers = await get_body(client, f"/v2/dist/{name}/manifests/v1")
        assert status == 200 and body == manifest and headers["Docker-Content-Digest"] == digest, body
        for blob in blobs:
            status, body, _ = await get_body(client, f"/v2/dist/{name}/blobs/{sha256(blob)}")
            assert status == 200 and body == blob
    # distribution is stopped: the cache still answers, by tag too.
    status, body, _ = await get_body(client, f"/v2/dist/{name}/manifests/v1")
    assert status == 200 and body == manifest
    assert (await get_body(client, f"/v2/dist/{name}/blobs/{sha256(blobs[1])}"))[1] == blobs[1]
    assert orjson.loads((await get_body(client, f"/v2/dist/{name}/tags/list"))[1])["tags"] == ["v1"]
