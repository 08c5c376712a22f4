"""A full disk (ENOSPC) under a real ``regd serve``, on a small tmpfs the test mounts:
pushes are refused with 507 in the OCI envelope while nothing half-written becomes
visible, pulls keep working, the log, /metrics and the health check say so, and pushes
work again as soon as space is freed, without a restart."""

from __future__ import annotations

import asyncio
import errno
import hashlib
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest

from tests.prerequisites import require_root
from tests.regd_process import RegdProcess

NAME = "library/full"
OCI = "application/vnd.oci.image.manifest.v1+json"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    require_root("mounting a tmpfs of fixed size")
    mount = tmp_path / "fs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32m,mode=0700", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(path: Path) -> None:
    """Write ``path`` until the file system refuses another byte."""
    with open(path, "wb", buffering=0) as f:
        for size in (1 << 16, 4096, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError as e:
                assert e.errno == errno.ENOSPC, e


def _manifest(config: bytes, layer: bytes, note: str) -> bytes:
    return orjson.dumps({
        "schemaVersion": 2,
        "mediaType": OCI,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": _digest(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _digest(layer),
                    "size": len(layer)}],
        "annotations": {"note": note},
    })


async def _refused_507(resp: aiohttp.ClientResponse) -> None:
    body = await resp.read()
    assert resp.status == 507, body
    assert resp.headers["Content-Type"].startswith("application/json")
    error = orjson.loads(body)["errors"][0]
    assert error["code"] == "INSUFFICIENT_STORAGE"
    assert "out of storage space" in error["message"]


def _metric(text: str, name: str) -> float:
    return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(name + " "))


def test_a_full_disk_refuses_pushes_with_507_keeps_pulls_and_recovers_without_restart(
    small_fs: Path, tmp_path: Path
) -> None:
    data_dir = small_fs / "data"
    regd = RegdProcess(tmp_path, {"storage": {"data_dir": str(data_dir), "min_free": 1 << 20}})
    base = f"http://127.0.0.1:{regd.port}"
    config, layer = b'{"os":"linux"}', os.urandom(1 << 20)
    v1 = _manifest(config, layer, "v1")
    big, v2 = os.urandom(1 << 20), _manifest(config, layer, "v2")
    chunk = os.urandom(300_000)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            uploads = f"{base}/v2/{NAME}/blobs/uploads/"
            for blob in (config, layer):
                assert (await http.post(uploads, params={"digest": _digest(blob)}, data=blob)).status == 201
            put = await http.put(f"{base}/v2/{NAME}/manifests/v1", data=v1, headers={"Content-Type": OCI})
            assert put.status == 201
            resp = await http.post(uploads)
            session = base + resp.headers["Location"]
            first = await http.patch(session, data=chunk[:100_000], headers={"Content-Range": "0-99999"})
            assert first.status == 202
            resp = await http.post(uploads)  # all its bytes in, only the PUT (the commit) to come
            whole = base + resp.headers["Location"]
            assert (await http.patch(whole, data=big[:500_000])).status == 202

            # The disk fills up (the database's log too: no room kept in it).
            db = sqlite3.connect(data_dir / "regd.db")
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            db.close()
            filler = small_fs / "filler"
            await asyncio.to_thread(_fill, filler)

            # Pushes: a blob in one request, a chunk of an upload, a manifest.
            await _refused_507(await http.post(uploads, params={"digest": _digest(big)}, data=big))
            rest = {"Content-Range": f"100000-{len(chunk) - 1}"}
            await _refused_507(await http.patch(session, data=chunk[100_000:], headers=rest))
            await _refused_507(
                await http.put(f"{base}/v2/{NAME}/manifests/v2", data=v2, headers={"Content-Type": OCI})
            )
            await _refused_507(await http.put(whole, params={"digest": _digest(big[:500_000])}))
            assert (await http.head(f"{base}/v2/{NAME}/blobs/{_digest(big[:500_000])}")).status == 404
            # Nothing of them is visible, nor left behind where a reader could meet it.
            assert (await http.head(f"{base}/v2/{NAME}/blobs/{_digest(big)}")).status == 404
            assert (await http.get(f"{base}/v2/{NAME}/manifests/v2", headers={"Accept": OCI})).status == 404
            assert (await http.get(f"{base}/v2/{NAME}/manifests/{_digest(v2)}")).status == 404
            assert not (data_dir / "blobs" / "sha256" / _digest(big)[7:9] / _digest(big)[7:]).exists()
            assert os.listdir(data_dir / "tmp") == []
            # Pulls keep working.
            resp = await http.get(f"{base}/v2/{NAME}/manifests/v1", headers={"Accept": OCI})
            assert resp.status == 200 and await resp.read() == v1
            assert (await http.head(f"{base}/v2/{NAME}/blobs/{_digest(layer)}")).status == 200
            resp = await http.get(f"{base}/v2/{NAME}/blobs/{_digest(layer)}")
            assert resp.status == 200 and await resp.read() == layer
            # The operator is told: /metrics, the health check, the log.
            text = await (await http.get(f"{base}/metrics")).text()
            assert _metric(text, "regd_storage_full_errors_total") >= 4
            assert _metric(text, "regd_storage_free_bytes") < 1 << 20
            health: dict[str, Any] = await (await http.get(f"{base}/api/v2.0/health")).json()
            storage = health["components"][2]
            assert health["status"] == "unhealthy" and storage["status"] == "unhealthy", health
            assert "out of storage space: POST" in regd.log()

            # Space is freed: everything works again, in the same process.
            filler.unlink()
            pid = regd.pid
            assert (await http.post(uploads, params={"digest": _digest(big)}, data=big)).status == 201
            resp = await http.get(session)
            assert resp.status == 204 and resp.headers["Range"] == "0-99999"  # the chunk before kept
            assert (await http.patch(session, data=chunk[100_000:], headers=rest)).status == 202
            assert (await http.put(session, params={"digest": _digest(chunk)})).status == 201
            put = await http.put(f"{base}/v2/{NAME}/manifests/v2", data=v2, headers={"Content-Type": OCI})
            assert put.status == 201, await put.text()
            assert (await http.put(whole, params={"digest": _digest(big[:500_000])})).status == 201
            resp = await http.get(f"{base}/v2/{NAME}/blobs/{_digest(chunk)}")
            assert await resp.read() == chunk
            health = await (await http.get(f"{base}/api/v2.0/health")).json()
            assert health["status"] == "healthy", health
            assert regd.pid == pid and regd.alive()

    try:
        regd.start()
        asyncio.run(scenario())
        assert regd.stop() == 0
        assert "Traceback" not in regd.log()
    finally:
        regd.close()


def test_an_upload_cut_off_by_a_full_disk_mid_stream_is_refused_and_resumes_once_space_is_freed(
    small_fs: Path, tmp_path: Path
) -> None:
    data_dir = small_fs / "data"
    regd = RegdProcess(tmp_path, {"storage": {"data_dir": str(data_dir)}})
    base = f"http://127.0.0.1:{regd.port}"
    data = os.urandom(4 << 20)

    async def scenario() -> None:
        async with aiohttp.ClientSession() as http:
            resp = await http.post(f"{base}/v2/{NAME}/blobs/uploads/")
            session = base + resp.headers["Location"]
            # Room for well under the 4 MiB the PATCH streams (the database keeps its log).
            filler = small_fs / "filler"
            await asyncio.to_thread(_fill, filler)
            os.truncate(filler, filler.stat().st_size - (1 << 20))

            await _refused_507(await http.patch(session, data=data))

            resp = await http.get(session)
            assert resp.status == 204
            kept = int(resp.headers["Range"].split("-")[1]) + 1 if resp.headers["Range"] != "0-0" else 0
            assert kept < len(data)
            filler.unlink()
            rest = {"Content-Range": f"{kept}-{len(data) - 1}"}
            assert (await http.patch(session, data=data[kept:], headers=rest)).status == 202
            resp = await http.put(session, params={"digest": _digest(data)})
            assert resp.status == 201, await resp.text()
            resp = await http.get(f"{base}/v2/{NAME}/blobs/{_digest(data)}")
            assert _digest(await resp.read()) == _digest(data)

    try:
        regd.start()
        asyncio.run(scenario())
        assert "out of storage space: PATCH" in regd.log() and "No space left on device" in regd.log()
        assert regd.stop() == 0
    finally:
        regd.close()
