"""Shared fixtures: the real app over a real SQLite file in a temporary data directory."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Generator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient

from regd.app import create_app
from regd.config import Config, load_config
from regd.metadata.db import Database
from tests.prerequisites import in_ci, skip_allowed

Client = TestClient  # type: ignore[type-arg]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Under CI a skipped test fails: CI installs every prerequisite (tests/run.sh), so a
    skip there means a broken setup, whatever the skip condition in the test says."""
    report = yield
    if report.skipped and in_ci() and not hasattr(report, "wasxfail"):
        reason = _skip_reason(report)
        if not skip_allowed(reason):
            report.outcome = "failed"
            report.longrepr = f"skipped under CI (CI={os.environ.get('CI')}), which fails the run: {reason}"
    return report


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr)


def make_config(data_dir: Path, **sections: dict[str, Any]) -> Config:
    # Access control is off for the registry-core tests; auth tests pass auth={"enabled": True}.
    overrides: dict[str, dict[str, Any]] = {
        "storage": {"data_dir": str(data_dir), "fsync": False},
        "auth": {"enabled": False},
    }
    for section, keys in sections.items():
        overrides.setdefault(section, {}).update(keys)
    return load_config(None, environ={}, overrides=overrides)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def client(aiohttp_client: Callable[..., Awaitable[Client]], data_dir: Path) -> Client:
    """The app with access control off (the registry-core tests)."""
    return await aiohttp_client(create_app(make_config(data_dir)))


@pytest.fixture
def auth_start(
    aiohttp_client: Callable[..., Awaitable[Client]], data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., Awaitable[Client]]:
    """``auth_start(auth={...}, server={...})``: a client over an app with access control
    on, whose admin password is ``tests.auth_support.ADMIN_PASSWORD``."""
    from tests.auth_support import starter

    return starter(aiohttp_client, data_dir, monkeypatch)


@pytest.fixture
async def auth_client(auth_start: Callable[..., Awaitable[Client]]) -> Client:
    """The app with access control on (the access-control and management-API tests)."""
    return await auth_start()


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha512(data: bytes) -> str:
    return "sha512:" + hashlib.sha512(data).hexdigest()


async def push_blob(client: Client, name: str, data: bytes, algorithm: str = "sha256") -> str:
    """Push ``data`` in one POST by its digest in ``algorithm``; returns that digest."""
    digest = sha512(data) if algorithm == "sha512" else sha256(data)
    resp = await client.post(f"/v2/{name}/blobs/uploads/", params={"digest": digest}, data=data)
    assert resp.status == 201, await resp.text()
    return digest


def image_manifest(config: tuple[str, int], layers: list[tuple[str, int]], **extra: Any) -> bytes:
    body: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config[0],
            "size": config[1],
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": s}
            for d, s in layers
        ],
    }
    body.update(extra)
    return orjson.dumps(body)


async def push_image(client: Client, name: str, tag: str, layers: int = 2) -> tuple[str, bytes, list[bytes]]:
    """Push a small random image; returns its manifest digest, manifest bytes and blobs."""
    blobs = [os.urandom(1000 + i) for i in range(layers + 1)]
    digests = [await push_blob(client, name, b) for b in blobs]
    manifest = image_manifest(
        (digests[0], len(blobs[0])), [(d, len(b)) for d, b in zip(digests[1:], blobs[1:], strict=True)]
    )
    resp = await client.put(
        f"/v2/{name}/manifests/{tag}",
        data=manifest,
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    assert resp.status == 201, await resp.text()
    return resp.headers["Docker-Content-Digest"], manifest, blobs


async def assert_error(resp: Any, status: int, code: str) -> dict[str, Any]:
    assert resp.status == status, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/json")
    body: dict[str, Any] = orjson.loads(await resp.read())
    assert body["errors"][0]["code"] == code, body
    return body


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def regd(data_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Run:
    """The ``regd`` command line on ``data_dir``: ``run(*args, stdin="")`` gives (status,
    stdout, stderr); the first command creates admin with password ``Admin12345``."""
    from regd.cli import main

    monkeypatch.setenv("REGD_ADMIN_PASSWORD", "Admin12345")

    def run(*args: str, stdin: str = "") -> tuple[int, str, str]:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        with pytest.raises(SystemExit) as exited:
            main([*args, "--data-dir", str(data_dir)])
        out, err = capsys.readouterr()
        return int(exited.value.code or 0), out, err

    return run


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    """An open, migrated database of its own (no daemon around it)."""
    database = Database(tmp_path / "regd.db")
    await database.open()
    yield database
    await database.close()
