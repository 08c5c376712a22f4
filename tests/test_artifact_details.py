"""Harbor's artifact details (issue 12 item 4): pull counts and pull times written in
batches, ``extra_attrs`` from an image's config, an index's ``references`` with platform.

The app tests write the counted pulls with ``PullRecorder.flush`` (what the background
task does every ``[server] pull_flush_interval``); the last tests run a real ``regd serve``
with ``workers = 2`` and read the counts back over the API.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from regd.config import ConfigError, load_config
from regd.digest import Digest
from regd.manifests import image_details
from regd.metadata import artifacts
from regd.services import SERVICES
from tests.auth_support import ADMIN, API, Starter, create_project
from tests.conftest import Client, image_manifest, sha256
from tests.regd_process import RegdProcess

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"

CONFIG = {
    "architecture": "arm64",
    "os": "linux",
    "created": "2026-11-01T10:00:00.123456789Z",
    "author": "Ops <ops@example.com>",
    "config": {"Env": ["PATH=/bin"], "Cmd": ["/app"], "Labels": {"maintainer": "someone else"}},
    "rootfs": {"type": "layers", "diff_ids": []},
    "history": [],
}


@pytest.fixture
async def client(auth_start: Starter) -> Client:
    client = await auth_start()
    await create_project(client, "demo")
    return client


async def push_blob(client: Client, name: str, data: bytes) -> str:
    digest = sha256(data)
    resp = await client.post(
        f"/v2/{name}/blobs/uploads/", params={"digest": digest}, data=data, headers=ADMIN
    )
    assert resp.status == 201, await resp.text()
    return digest


async def push_manifest(client: Client, name: str, reference: str, body: bytes, media_type: str) -> str:
    resp = await client.put(
        f"/v2/{name}/manifests/{reference}", data=body, headers={**ADMIN, "Content-Type": media_type}
    )
    assert resp.status == 201, await resp.text()
    return resp.headers["Docker-Content-Digest"]


async def push_image(
    client: Client, name: str, tag: str, config: dict[str, Any], docker: bool = False
) -> str:
    config_bytes = orjson.dumps(config)
    layer = f"layer of {name}:{tag} {time.time()}".encode()
    config_digest = await push_blob(client, name, config_bytes)
    layer_digest = await push_blob(client, name, layer)
    manifest = orjson.loads(image_manifest((config_digest, len(config_bytes)), [(layer_digest, len(layer))]))
    if docker:
        manifest["mediaType"] = DOCKER_MANIFEST
        manifest["config"]["mediaType"] = DOCKER_CONFIG
    media_type = DOCKER_MANIFEST if docker else OCI_MANIFEST
    return await push_manifest(client, name, tag, orjson.dumps(manifest), media_type)


async def get_json(client: Client, path: str) -> Any:
    resp = await client.get(f"{API}{path}", headers=ADMIN)
    assert resp.status == 200, await resp.text()
    return orjson.loads(await resp.read())


async def pull(client: Client, name: str, reference: str, method: str = "GET", **headers: str) -> int:
    resp = await client.request(method, f"/v2/{name}/manifests/{reference}", headers={**ADMIN, **headers})
    await resp.read()
    return resp.status


async def flush(client: Client) -> int:
    return await client.server.app[SERVICES].pulls.flush()


# -- pulls ---------------------------------------------------------------------------


async def test_pulls_by_tag_and_digest_count_once_written(client: Client) -> None:
    digest = await push_image(client, "demo/app", "v1", CONFIG)
    await pull(client, "demo/app", "v1")
    await pull(client, "demo/app", "v1")
    await pull(client, "demo/app", digest)

    before = await get_json(client, "/projects/demo/repositories/app")
    written = await flush(client)
    repository = await get_json(client, "/projects/demo/repositories/app")
    artifact = await get_json(client, f"/projects/demo/repositories/app/artifacts/{digest}")

    assert before["pull_count"] == 0  # counted in memory, not written per pull
    assert written == 3
    assert repository["pull_count"] == 3
    assert artifact["pull_time"] is not None
    assert artifact["pull_time"] >= artifact["push_time"]
    # The last pull was by digest: the tag's pull time is that of the pull before.
    assert artifact["push_time"] <= artifact["tags"][0]["pull_time"] <= artifact["pull_time"]


async def test_head_a_304_and_a_missing_manifest_are_not_pulls(client: Client) -> None:
    digest = await push_image(client, "demo/app", "v1", CONFIG)
    head = await pull(client, "demo/app", "v1", "HEAD")
    not_modified = await pull(client, "demo/app", "v1", **{"If-None-Match": f'"{digest}"'})
    missing = await pull(client, "demo/app", "v2")

    written = await flush(client)
    repository = await get_json(client, "/projects/demo/repositories/app")
    artifact = await get_json(client, "/projects/demo/repositories/app/artifacts/v1")

    assert (head, not_modified, missing) == (200, 304, 404)
    assert written == 0
    assert repository["pull_count"] == 0
    assert artifact["pull_time"] is None
    assert artifact["tags"][0]["pull_time"] is None


async def test_a_pull_by_digest_leaves_the_tag_pull_time_alone(client: Client) -> None:
    digest = await push_image(client, "demo/app", "v1", CONFIG)
    await pull(client, "demo/app", digest)
    await flush(client)

    artifact = await get_json(client, "/projects/demo/repositories/app/artifacts/v1")

    assert artifact["pull_time"] is not None
    assert artifact["tags"][0]["pull_time"] is None


async def test_pulls_of_a_deleted_artifact_are_dropped_quietly(client: Client) -> None:
    digest = await push_image(client, "demo/app", "v1", CONFIG)
    await push_image(client, "demo/app", "v2", CONFIG)
    await pull(client, "demo/app", digest)
    resp = await client.delete(f"/v2/demo/app/manifests/{digest}", headers=ADMIN)
    assert resp.status == 202

    written = await flush(client)
    repository = await get_json(client, "/projects/demo/repositories/app")

    assert written == 1
    assert repository["pull_count"] == 1


async def test_a_failed_flush_keeps_its_counts_for_the_next(
    client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    await push_image(client, "demo/app", "v1", CONFIG)
    await pull(client, "demo/app", "v1")
    real = artifacts.record_pulls

    async def failing(*args: Any) -> None:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(artifacts, "record_pulls", failing)
    with pytest.raises(sqlite3.OperationalError):
        await flush(client)
    await pull(client, "demo/app", "v1")
    monkeypatch.setattr(artifacts, "record_pulls", real)
    written = await flush(client)
    repository = await get_json(client, "/projects/demo/repositories/app")

    assert written == 2
    assert repository["pull_count"] == 2


# -- extra_attrs and references --------------------------------------------------------


def test_image_details_take_harbors_fields_and_fall_back_to_the_maintainer_label() -> None:
    without_author = {**CONFIG, "author": ""}

    assert image_details(orjson.dumps(CONFIG)) == {
        "architecture": "arm64",
        "os": "linux",
        "created": "2026-11-01T10:00:00.123456789Z",
        "author": "Ops <ops@example.com>",
        "config": CONFIG["config"],
    }
    assert image_details(orjson.dumps(without_author))["author"] == "someone else"
    assert image_details(b"not json") == {}
    assert image_details(b"[1, 2]") == {}


@pytest.mark.parametrize("docker", [False, True])
async def test_extra_attrs_come_from_the_image_config(client: Client, docker: bool) -> None:
    await push_image(client, "demo/app", "v1", CONFIG, docker=docker)

    (listed,) = await get_json(client, "/projects/demo/repositories/app/artifacts")

    assert listed["type"] == "IMAGE"
    assert listed["media_type"] == (DOCKER_CONFIG if docker else "application/vnd.oci.image.config.v1+json")
    assert listed["extra_attrs"] == {
        "architecture": "arm64",
        "os": "linux",
        "created": "2026-11-01T10:00:00.123456789Z",
        "author": "Ops <ops@example.com>",
        "config": CONFIG["config"],
    }


async def test_extra_attrs_are_stored_at_push_so_a_listing_reads_no_blob(client: Client) -> None:
    digest = await push_image(client, "demo/app", "v1", CONFIG)
    services = client.server.app[SERVICES]
    manifest = orjson.loads((await services.registry.get_manifest("demo/app", digest)).data)
    services.store.path(Digest.parse(manifest["config"]["digest"])).unlink()

    artifact = await get_json(client, "/projects/demo/repositories/app/artifacts/v1")

    assert artifact["extra_attrs"]["architecture"] == "arm64"


async def test_a_non_image_artifact_has_empty_extra_attrs(client: Client) -> None:
    empty = await push_blob(client, "demo/art", b"{}")
    payload = await push_blob(client, "demo/art", b"an sbom")
    manifest = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": "application/vnd.example.sbom",
        "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
        "layers": [{"mediaType": "text/plain", "digest": payload, "size": 7}],
    }
    await push_manifest(client, "demo/art", "sbom", orjson.dumps(manifest), OCI_MANIFEST)

    artifact = await get_json(client, "/projects/demo/repositories/art/artifacts/sbom")

    assert artifact["extra_attrs"] == {}
    assert artifact["type"] == "UNKNOWN"


async def push_index(client: Client) -> tuple[str, str, str]:
    amd = await push_image(client, "demo/multi", "amd64", {**CONFIG, "architecture": "amd64"})
    arm = await push_image(client, "demo/multi", "arm64", CONFIG)
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {
                "mediaType": OCI_MANIFEST,
                "digest": amd,
                "size": 1,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {"org.example.flavour": "plain"},
            },
            {
                "mediaType": OCI_MANIFEST,
                "digest": arm,
                "size": 1,
                "platform": {"architecture": "arm64", "os": "linux", "variant": "v8", "os.version": "6.1"},
                "urls": ["https://mirror.example.com/arm"],
            },
        ],
    }
    return await push_manifest(client, "demo/multi", "v1", orjson.dumps(index), OCI_INDEX), amd, arm


async def test_an_index_lists_its_children_with_platform_annotations_and_urls(client: Client) -> None:
    index, amd, arm = await push_index(client)

    artifact = await get_json(client, "/projects/demo/repositories/multi/artifacts/v1")
    ids = {
        a["digest"]: a["id"] for a in await get_json(client, "/projects/demo/repositories/multi/artifacts")
    }

    assert artifact["digest"] == index
    assert artifact["extra_attrs"] == {}
    by_digest = {r["child_digest"]: r for r in artifact["references"]}
    assert by_digest[amd] == {
        "parent_id": ids[index],
        "child_id": ids[amd],
        "child_digest": amd,
        "platform": {"architecture": "amd64", "os": "linux"},
        "annotations": {"org.example.flavour": "plain"},
        "urls": None,
    }
    assert by_digest[arm]["platform"] == {
        "architecture": "arm64",
        "os": "linux",
        "variant": "v8",
        "os.version": "6.1",
    }
    assert by_digest[arm]["urls"] == ["https://mirror.example.com/arm"]
    assert by_digest[arm]["annotations"] is None


async def test_details_of_manifests_pushed_before_they_were_kept_are_learned_once(client: Client) -> None:
    index, amd, _ = await push_index(client)
    services = client.server.app[SERVICES]
    async with services.db.transaction() as conn:  # as a database from before migration 4
        await conn.execute("UPDATE manifests SET extra_attrs = NULL")
        await conn.execute("UPDATE manifest_children SET descriptor = NULL")

    artifact = await get_json(client, "/projects/demo/repositories/multi/artifacts/v1")
    child = await get_json(client, f"/projects/demo/repositories/multi/artifacts/{amd}")
    stored = await services.db.fetchall("SELECT count(*) FROM manifests WHERE extra_attrs IS NULL")
    unknown = await services.db.fetchall("SELECT count(*) FROM manifest_children WHERE descriptor IS NULL")

    assert {r["child_digest"]: r["platform"] for r in artifact["references"]}[amd] == {
        "architecture": "amd64",
        "os": "linux",
    }
    assert child["extra_attrs"]["architecture"] == "amd64"
    # Only what a listing showed is learned; the arm64 image was not listed yet.
    assert stored[0][0] == 1
    assert unknown[0][0] == 0
    assert artifact["digest"] == index


# -- a real daemon with two worker processes -----------------------------------------


def api_json(process: RegdProcess, path: str) -> Any:
    return asyncio.run(_api_json(f"http://127.0.0.1:{process.port}/api/v2.0{path}"))


async def _api_json(url: str) -> Any:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        assert resp.status == 200, await resp.text()
        return orjson.loads(await resp.read())


async def _push_and_pull(base: str, pulls: int) -> str:
    """Make project library, push library/app:v1 (auth is off), then pull it ``pulls``
    times, each on a new connection (so that both workers answer some)."""
    async with aiohttp.ClientSession() as session:
        project = {"project_name": "library", "metadata": {"public": "true"}}
        async with session.post(f"{base}/api/v2.0/projects", json=project) as resp:
            assert resp.status == 201, await resp.text()
        config = orjson.dumps(CONFIG)
        layer = b"a layer"
        for blob in (config, layer):
            url = f"{base}/v2/library/app/blobs/uploads/"
            async with session.post(url, params={"digest": sha256(blob)}, data=blob) as resp:
                assert resp.status == 201, await resp.text()
        manifest = image_manifest((sha256(config), len(config)), [(sha256(layer), len(layer))])
        headers = {"Content-Type": OCI_MANIFEST}
        async with session.put(f"{base}/v2/library/app/manifests/v1", data=manifest, headers=headers) as resp:
            assert resp.status == 201, await resp.text()
            digest = resp.headers["Docker-Content-Digest"]
    for i in range(pulls):
        async with aiohttp.ClientSession() as session:
            reference = "v1" if i % 2 else digest
            async with session.get(f"{base}/v2/library/app/manifests/{reference}") as resp:
                assert resp.status == 200
                await resp.read()
    return digest


def test_two_workers_write_their_pulls_when_they_stop(tmp_path: Path) -> None:
    process = RegdProcess(tmp_path, {"server": {"workers": 2, "pull_flush_interval": 3600.0}})
    try:
        process.start()
        digest = asyncio.run(_push_and_pull(f"http://127.0.0.1:{process.port}", 20))
        unwritten = api_json(process, "/projects/library/repositories/app")["pull_count"]
        assert process.stop() == 0
        process.start()

        repository = api_json(process, "/projects/library/repositories/app")
        artifact = api_json(process, f"/projects/library/repositories/app/artifacts/{digest}")
    finally:
        process.close()

    assert unwritten == 0
    assert repository["pull_count"] == 20
    assert artifact["pull_time"] is not None
    assert artifact["tags"][0]["pull_time"] is not None


def test_two_workers_write_their_pulls_every_interval(tmp_path: Path) -> None:
    process = RegdProcess(tmp_path, {"server": {"workers": 2, "pull_flush_interval": 0.2}})
    try:
        process.start()
        asyncio.run(_push_and_pull(f"http://127.0.0.1:{process.port}", 20))
        deadline = time.monotonic() + 30
        count = 0
        while time.monotonic() < deadline:
            count = api_json(process, "/projects/library/repositories/app")["pull_count"]
            if count >= 20:
                break
            time.sleep(0.1)
    finally:
        process.close()

    assert count == 20


@pytest.mark.parametrize("interval", [0, -1.0])
def test_pull_flush_interval_must_be_positive(interval: float) -> None:
    with pytest.raises(ConfigError, match="pull_flush_interval"):
        load_config(None, environ={}, overrides={"server": {"pull_flush_interval": interval}})
