"""Who may manage proxy caches and pull through them (auth on), and Docker Hub's
``library/``. (The CLI's ``regd registry add`` is tested in test_admin_cli.py.)"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.auth_support import (
    ADMIN,
    API,
    PASSWORD,
    Starter,
    add_member,
    basic,
    create_robot,
    create_user,
)
from tests.conftest import Client, assert_error, sha256
from tests.proxy_support import FaultProxy, Upstream, push, random_image, upstream_regd


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    with upstream_regd(tmp_path_factory.mktemp("upstream")) as (found, _process):
        yield found


def _endpoint(url: str, upstream: Upstream, name: str = "up") -> dict[str, object]:
    credential = {"type": "basic", "access_key": upstream.username, "access_secret": upstream.password}
    return {"name": name, "type": "docker-registry", "url": url, "credential": credential}


async def _proxy_project(client: Client, url: str, upstream: Upstream, public: bool) -> None:
    resp = await client.post(f"{API}/registries", json=_endpoint(url, upstream), headers=ADMIN)
    assert resp.status == 201, await resp.text()
    registry_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    body = {"project_name": "hub", "registry_id": registry_id, "metadata": {"public": str(public).lower()}}
    resp = await client.post(f"{API}/projects", json=body, headers=ADMIN)
    assert resp.status == 201, await resp.text()


async def test_only_system_administrators_manage_registries_and_create_proxy_projects(
    auth_start: Starter, upstream: Upstream
) -> None:
    client = await auth_start()
    await create_user(client, "dev")
    dev = basic("dev")
    await assert_error(await client.get(f"{API}/registries"), 401, "UNAUTHORIZED")
    await assert_error(await client.get(f"{API}/registries", headers=dev), 403, "FORBIDDEN")
    resp = await client.post(f"{API}/registries", json=_endpoint(upstream.url, upstream), headers=dev)
    await assert_error(resp, 403, "FORBIDDEN")
    resp = await client.post(f"{API}/registries", json=_endpoint(upstream.url, upstream), headers=ADMIN)
    assert resp.status == 201
    registry_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    body = {"project_name": "mine", "registry_id": registry_id}
    resp = await client.post(f"{API}/projects", json=body, headers=dev)
    error = await assert_error(resp, 403, "FORBIDDEN")
    assert error["errors"][0]["message"] == "Only system admin can create proxy cache project"


async def test_members_and_robots_pull_through_a_private_proxy_project_others_are_refused(
    auth_start: Starter, upstream: Upstream
) -> None:
    name = "library/private-pull"
    blobs = random_image(2000)
    digest, manifest = await push(upstream, name, "v1", blobs)
    client = await auth_start()
    host, port = upstream.url.removeprefix("http://").rsplit(":", 1)
    fault = FaultProxy(host, int(port))
    await fault.start()
    try:
        await _proxy_project(client, fault.url, upstream, public=False)
        await create_user(client, "gu")
        await add_member(client, "hub", "gu", 3)
        await create_user(client, "out")
        robot = await create_robot(client, "hub", "puller", ["pull"])
        robot_auth = basic(robot["name"], robot["secret"])
        path = f"/v2/hub/{name}/manifests/v1"
        for headers in (basic("gu"), robot_auth):
            resp = await client.get(path, headers=headers)
            assert resp.status == 200 and await resp.read() == manifest
            assert resp.headers["Docker-Content-Digest"] == digest
            resp = await client.get(f"/v2/hub/{name}/blobs/{sha256(blobs[1])}", headers=headers)
            assert resp.status == 200 and await resp.read() == blobs[1]
        await assert_error(await client.get(path), 401, "UNAUTHORIZED")
        await assert_error(await client.get(path, headers=basic("out")), 403, "DENIED")
        # A guest may not push anywhere; a project admin may push to normal projects,
        # but never into a proxy cache.
        await create_user(client, "pa")
        await add_member(client, "hub", "pa", 1)
        resp = await client.post(f"/v2/hub/{name}/blobs/uploads/", headers=basic("pa", PASSWORD))
        error = await assert_error(resp, 403, "DENIED")
        assert error["errors"][0]["message"] == "denied: can not push artifact to a proxy project: hub"
    finally:
        await fault.stop()


async def test_docker_hub_one_part_names_are_redirected_to_library(auth_start: Starter) -> None:
    client = await auth_start(auth={"enabled": False})
    body = {"name": "dh", "type": "docker-hub", "url": "http://127.0.0.1:9"}
    resp = await client.post(f"{API}/registries", json=body)
    assert resp.status == 201, await resp.text()
    registry_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    resp = await client.post(
        f"{API}/projects", json={"project_name": "dockerhub", "registry_id": registry_id}
    )
    assert resp.status == 201, await resp.text()
    resp = await client.get("/v2/dockerhub/alpine/manifests/3.19", allow_redirects=False)
    assert resp.status == 301
    assert resp.headers["Location"] == "/v2/dockerhub/library/alpine/manifests/3.19"
