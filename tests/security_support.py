"""Helpers for the attacks of issue 15, mounted against a real ``regd serve`` with access
control on: users, projects, robots and pushes over HTTP on loopback, and clients bound
to other loopback addresses (127.0.0.2...) to stand for other machines."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp

from tests.regd_process import RegdProcess

ADMIN_PASSWORD = "Admin12345"
PASSWORD = "Passw0rd1"
API = "/api/v2.0"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def start_regd(root: Path, **sections: dict[str, Any]) -> RegdProcess:
    auth = {"enabled": True, **sections.pop("auth", {})}
    process = RegdProcess(root, {"auth": auth, **sections}, env={"REGD_ADMIN_PASSWORD": ADMIN_PASSWORD})
    process.start()
    return process


def basic(user: str, password: str = PASSWORD) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


ADMIN = basic("admin", ADMIN_PASSWORD)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def session_from(address: str = "127.0.0.1", limit: int = 100) -> aiohttp.ClientSession:
    """A client whose connections come from ``address`` (any of 127.0.0.0/8)."""
    connector = aiohttp.TCPConnector(local_addr=(address, 0), limit=limit, force_close=True)
    return aiohttp.ClientSession(connector=connector)


class Api:
    """The management API and the token service of one regd, as the administrator."""

    def __init__(self, http: aiohttp.ClientSession, regd: RegdProcess) -> None:
        self.http = http
        self.base = f"http://127.0.0.1:{regd.port}"

    async def call(
        self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any
    ) -> tuple[int, Any, dict[str, str]]:
        async with self.http.request(method, self.base + path, headers=headers, **kwargs) as resp:
            raw = await resp.read()
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            return resp.status, body, dict(resp.headers)

    async def expect(self, status: int, method: str, path: str, **kwargs: Any) -> Any:
        got, body, _ = await self.call(method, path, **kwargs)
        assert got == status, (method, path, got, body)
        return body

    async def user(self, name: str, password: str = PASSWORD) -> int:
        body = {"username": name, "password": password}
        _, _, headers = await self.call("POST", f"{API}/users", ADMIN, json=body)
        return int(headers["Location"].rsplit("/", 1)[1])

    async def project(self, name: str, headers: dict[str, str] = ADMIN, public: bool = False) -> int:
        body = {"project_name": name, "metadata": {"public": "true" if public else "false"}}
        status, answer, location = await self.call("POST", f"{API}/projects", headers, json=body)
        assert status == 201, answer
        return int(location["Location"].rsplit("/", 1)[1])

    async def member(self, project: str, user: str, role: int) -> int:
        body = {"role_id": role, "member_user": {"username": user}}
        path = f"{API}/projects/{project}/members"
        status, answer, location = await self.call("POST", path, ADMIN, json=body)
        assert status == 201, answer
        return int(location["Location"].rsplit("/", 1)[1])

    async def robot(self, project: str, name: str, actions: list[str]) -> dict[str, Any]:
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
        }
        created: dict[str, Any] = await self.expect(201, "POST", f"{API}/robots", headers=ADMIN, json=body)
        return created

    async def token(self, scopes: list[str], headers: dict[str, str]) -> str:
        params = [("service", "regd"), *(("scope", s) for s in scopes)]
        body = await self.expect(200, "GET", "/service/token", headers=headers, params=params)
        return str(body["token"])

    async def push_blob(self, name: str, data: bytes, headers: dict[str, str]) -> int:
        params = {"digest": sha256(data)}
        status, _, _ = await self.call(
            "POST", f"/v2/{name}/blobs/uploads/", headers, params=params, data=data
        )
        return status

    async def push_image(self, name: str, tag: str, headers: dict[str, str]) -> tuple[str, list[str]]:
        """A small random image; (manifest digest, [config digest, layer digest])."""
        blobs = [os.urandom(300), os.urandom(700)]
        for blob in blobs:
            assert await self.push_blob(name, blob, headers) == 201
        manifest = manifest_of(blobs[0], blobs[1:])
        status, body, answer = await self.call(
            "PUT",
            f"/v2/{name}/manifests/{tag}",
            {**headers, "Content-Type": OCI_MANIFEST},
            data=manifest,
        )
        assert status == 201, body
        return answer["Docker-Content-Digest"], [sha256(b) for b in blobs]


def manifest_of(config: bytes, layers: list[bytes]) -> bytes:
    def descriptor(data: bytes, media_type: str) -> dict[str, Any]:
        return {"mediaType": media_type, "digest": sha256(data), "size": len(data)}

    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": descriptor(config, "application/vnd.oci.image.config.v1+json"),
            "layers": [descriptor(layer, "application/vnd.oci.image.layer.v1.tar") for layer in layers],
        }
    ).encode()


async def eventually(check: Callable[[], Awaitable[bool]], within: float, what: str) -> None:
    """Poll ``check`` until it holds, failing after ``within`` seconds."""
    deadline = time.monotonic() + within
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within}s: {what}")
        await asyncio.sleep(0.1)
