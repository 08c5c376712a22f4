"""kill -9 at random instants during pushes: afterwards no blob file differs from its
digest, no row points at a missing file, and everything acknowledged is still served."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import aiohttp
import uvloop


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(data_dir: Path, port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from regd.cli import main; main()",
                "serve",
                "--listen",
                f"127.0.0.1:{port}",
                "--data-dir",
                str(data_dir),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "REGD_AUTH_ENABLED": "false"},
        )


async def _wait_ready(http: aiohttp.ClientSession, base: str) -> None:
    for _ in range(200):
        try:
            if (await http.get(f"{base}/v2/")).status in (200, 401):
                return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.05)
    raise AssertionError("regd did not start")


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _pusher(
    http: aiohttp.ClientSession, base: str, rng: random.Random, acked: dict[str, bytes]
) -> None:
    """Push blobs (monolithic, streamed, chunked) and manifests until cancelled or cut off."""
    try:
        while True:
            data = rng.randbytes(rng.choice([100, 50_000, 400_000, 2_000_000]))
            digest = _digest(data)
            how = rng.choice(["monolithic", "streamed", "chunked"])
            if how == "monolithic":
                resp = await http.post(
                    f"{base}/v2/library/crash/blobs/uploads/", params={"digest": digest}, data=data
                )
            else:
                resp = await http.post(f"{base}/v2/library/crash/blobs/uploads/")
                location = base + resp.headers["Location"]
                if how == "streamed":
                    await http.patch(location, data=data)
                else:
                    half = len(data) // 2
                    await http.patch(location, data=data[:half], headers={"Content-Range": f"0-{half - 1}"})
                    await http.patch(
                        location, data=data[half:], headers={"Content-Range": f"{half}-{len(data) - 1}"}
                    )
                resp = await http.put(location, params={"digest": digest})
            if resp.status == 201:
                acked[digest] = data
                config = b"{}"
                await http.post(
                    f"{base}/v2/library/crash/blobs/uploads/", params={"digest": _digest(config)}, data=config
                )
                manifest = (
                    b'{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":'
                    b'{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":2},"layers":'
                    b'[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"%s","size":%d}]}'
                    % (_digest(config).encode(), digest.encode(), len(data))
                )
                resp = await http.put(
                    f"{base}/v2/library/crash/manifests/t{len(acked)}",
                    data=manifest,
                    headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
                )
                if resp.status == 201:
                    acked[_digest(manifest)] = manifest
    except (TimeoutError, aiohttp.ClientError, KeyError):
        return  # the daemon was killed under us


def _check_store(data_dir: Path) -> None:
    db = sqlite3.connect(f"file:{data_dir / 'regd.db'}?mode=ro", uri=True)
    try:
        for digest, size in db.execute("SELECT digest, size FROM blobs"):
            algorithm, hexdigest = digest.split(":")
            path = data_dir / "blobs" / algorithm / hexdigest[:2] / hexdigest
            assert path.exists(), f"row {digest} points at a missing file"
            assert path.stat().st_size == size
        for path in (data_dir / "blobs").rglob("*"):
            if path.is_file():
                assert hashlib.sha256(path.read_bytes()).hexdigest() == path.name, (
                    f"{path} differs from its digest"
                )
        assert not list(
            db.execute(
                "SELECT m.digest FROM manifests m LEFT JOIN blobs b ON b.digest = m.digest "
                "WHERE b.digest IS NULL"
            )
        )
    finally:
        db.close()


def test_kill_9_during_pushes_loses_nothing_acknowledged(tmp_path: Path) -> None:
    data_dir, log = tmp_path / "data", tmp_path / "regd.log"
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(1234)
    acked: dict[str, bytes] = {}

    async def round_trip() -> None:
        proc = _start(data_dir, port, log)
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                await _wait_ready(http, base)
                # everything acknowledged before earlier kills is served intact
                for digest, data in acked.items():
                    kind = "manifests" if data.startswith(b'{"schemaVersion"') else "blobs"
                    resp = await http.get(f"{base}/v2/library/crash/{kind}/{digest}")
                    assert resp.status == 200, (digest, resp.status)
                    assert _digest(await resp.read()) == digest
                pushers = [
                    asyncio.create_task(_pusher(http, base, random.Random(rng.random()), acked))
                    for _ in range(4)
                ]
                await asyncio.sleep(rng.uniform(0.3, 1.5))
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
                await asyncio.wait(pushers, timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    for _ in range(6):
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(round_trip())
        _check_store(data_dir)
    assert len(acked) > 10, "the pushers should have had time to finish some pushes"

    async def final() -> None:
        proc = _start(data_dir, port, log)
        try:
            async with aiohttp.ClientSession() as http:
                await _wait_ready(http, base)
                for digest, data in acked.items():
                    kind = "manifests" if data.startswith(b'{"schemaVersion"') else "blobs"
                    resp = await http.get(f"{base}/v2/library/crash/{kind}/{digest}")
                    assert resp.status == 200 and await resp.read() == data
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(final())
