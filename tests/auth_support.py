"""Helpers for the access-control tests: an app with auth on, identities, images."""

from __future__ import annotations

import base64
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from regd.app import create_app
from tests.conftest import Client, image_manifest, make_config, sha256

Starter = Callable[..., Awaitable[Client]]

ADMIN_PASSWORD = "Admin12345"
PASSWORD = "Passw0rd1"
API = "/api/v2.0"


def auth_config(data_dir: Path, **auth: Any) -> Any:
    return make_config(data_dir, auth={"enabled": True, **auth})


def starter(aiohttp_client: Starter, data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Starter:
    """``start(auth={...}, server={...})``: a test client over an app with auth on, whose
    admin password is ``ADMIN_PASSWORD``."""

    async def start(**sections: dict[str, Any]) -> Client:
        monkeypatch.setenv("REGD_ADMIN_PASSWORD", ADMIN_PASSWORD)
        auth = {"enabled": True, **sections.pop("auth", {})}
        return await aiohttp_client(create_app(make_config(data_dir, auth=auth, **sections)))

    return start


def basic(username: str, password: str = PASSWORD) -> dict[str, str]:
    encoded = base64.b64encode(f"{username}:{password}".encode()).decode()
    return {"Authorization": f"Basic {encoded}"}


ADMIN = basic("admin", ADMIN_PASSWORD)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_user(client: Client, name: str, password: str = PASSWORD, admin: bool = False) -> int:
    resp = await client.post(f"{API}/users", json={"username": name, "password": password}, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    user_id = int(resp.headers["Location"].rsplit("/", 1)[1])
    if admin:
        resp = await client.put(
            f"{API}/users/{user_id}/sysadmin", json={"sysadmin_flag": True}, headers=ADMIN
        )
        assert resp.status == 200, await resp.text()
    return user_id


async def create_project(client: Client, name: str, public: bool = False) -> int:
    body = {"project_name": name, "metadata": {"public": "true" if public else "false"}}
    resp = await client.post(f"{API}/projects", json=body, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    return int(resp.headers["Location"].rsplit("/", 1)[1])


async def add_member(client: Client, project: str, username: str, role: int) -> int:
    body = {"role_id": role, "member_user": {"username": username}}
    resp = await client.post(f"{API}/projects/{project}/members", json=body, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    return int(resp.headers["Location"].rsplit("/", 1)[1])


async def create_robot(
    client: Client, project: str, name: str, actions: list[str], **extra: Any
) -> dict[str, Any]:
    body = {
        "name": name,
        "level": "project",
        "duration": -1,
        "permissions": [
            {
                "kind": "project",
                "namespace": project,
                "access": [{"resource": "repository", "action": a} for a in actions],
            }
        ],
        **extra,
    }
    resp = await client.post(f"{API}/robots", json=body, headers=ADMIN)
    assert resp.status == 201, await resp.text()
    created: dict[str, Any] = orjson.loads(await resp.read())
    return created


async def token(client: Client, scopes: list[str], headers: dict[str, str] | None = None) -> str:
    params = [("service", "regd"), *(("scope", s) for s in scopes)]
    resp = await client.get("/service/token", params=params, headers=headers or {})
    assert resp.status == 200, await resp.text()
    return str(orjson.loads(await resp.read())["token"])


async def push_image_as(client: Client, name: str, tag: str, headers: dict[str, str]) -> tuple[str, bytes]:
    """Push a small random image with ``headers``; returns its digest and manifest."""
    blobs = [os.urandom(500 + i) for i in range(2)]
    for blob in blobs:
        resp = await client.post(
            f"/v2/{name}/blobs/uploads/", params={"digest": sha256(blob)}, data=blob, headers=headers
        )
        assert resp.status == 201, await resp.text()
    manifest = image_manifest((sha256(blobs[0]), len(blobs[0])), [(sha256(blobs[1]), len(blobs[1]))])
    resp = await client.put(
        f"/v2/{name}/manifests/{tag}",
        data=manifest,
        headers={**headers, "Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert resp.status == 201, await resp.text()
    return resp.headers["Docker-Content-Digest"], manifest


ROLES = {"pa": 1, "dev": 2, "gu": 3, "ma": 4, "lg": 5}


async def setup_roles(client: Client, project: str = "demo", public: bool = False) -> None:
    """Project ``project`` with one user per role (pa, dev, gu, ma, lg) and a non-member
    ``out``; ``<project>/app:v1`` pushed by admin."""
    await create_project(client, project, public)
    for name, role in ROLES.items():
        await create_user(client, name)
        await add_member(client, project, name, role)
    await create_user(client, "out")
    await push_image_as(client, f"{project}/app", "v1", ADMIN)
