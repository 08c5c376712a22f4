"""kill -9 at random instants during pushes: afterwards no blob file differs from its
digest, no row points at a missing file, and everything acknowledged is still served."""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
from collections import Counter
from pathlib import Path

import aiohttp
import uvloop

from tests.regd_process import RegdProcess


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# What a push may meet when the daemon dies under it; anything else is a real failure.
CUT_OFF = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, TimeoutError)


def _expect(resp: aiohttp.ClientResponse, status: int, what: str) -> None:
    if resp.status != status:
        raise AssertionError(f"{what}: {resp.status} (wanted {status}) {resp.headers.get('Content-Type')}")


async def _pusher(
    http: aiohttp.ClientSession,
    base: str,
    rng: random.Random,
    acked: dict[str, bytes],
    methods: Counter[str],
) -> None:
    """Push blobs (monolithic, streamed, chunked) and manifests until the daemon is killed.
    Every answer is checked: only a connection cut off by the kill ends a pusher quietly."""
    while True:
        data = rng.randbytes(rng.choice([100, 50_000, 400_000, 2_000_000]))
        digest = _digest(data)
        how = rng.choice(["monolithic", "streamed", "chunked"])
        uploads = f"{base}/v2/library/crash/blobs/uploads/"
        if how == "monolithic":
            resp = await http.post(uploads, params={"digest": digest}, data=data)
        else:
            resp = await http.post(uploads)
            _expect(resp, 202, "POST")
            location = base + resp.headers["Location"]
            if how == "streamed":
                _expect(await http.patch(location, data=data), 202, "streamed PATCH")
            else:
                half = len(data) // 2
                first = {"Content-Range": f"0-{half - 1}"}
                resp = await http.patch(location, data=data[:half], headers=first)
                _expect(resp, 202, "first chunk")
                resp = await http.patch(
                    location, data=data[half:], headers={"Content-Range": f"{half}-{len(data) - 1}"}
                )
                _expect(resp, 202, "second chunk")
            resp = await http.put(location, params={"digest": digest})
        _expect(resp, 201, f"{how} push")
        acked[digest] = data
        methods[how] += 1
        config = b"{}"
        resp = await http.post(uploads, params={"digest": _digest(config)}, data=config)
        _expect(resp, 201, "config push")
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
        _expect(resp, 201, "manifest PUT")
        acked[_digest(manifest)] = manifest
        methods["manifest"] += 1


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
    regd = RegdProcess(tmp_path)
    base = f"http://127.0.0.1:{regd.port}"
    rng = random.Random(1234)
    acked: dict[str, bytes] = {}
    methods: Counter[str] = Counter()

    async def round_trip() -> None:
        regd.start()
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as http:
                # everything acknowledged before earlier kills is served intact
                for digest, data in acked.items():
                    kind = "manifests" if data.startswith(b'{"schemaVersion"') else "blobs"
                    resp = await http.get(f"{base}/v2/library/crash/{kind}/{digest}")
                    assert resp.status == 200, (digest, resp.status)
                    assert _digest(await resp.read()) == digest
                pushers = [
                    asyncio.create_task(_pusher(http, base, random.Random(rng.random()), acked, methods))
                    for _ in range(4)
                ]
                await asyncio.sleep(rng.uniform(0.3, 1.5))
                # Any pusher that ended before the kill failed: its error is raised here.
                for task in pushers:
                    if task.done():
                        task.result()
                regd.kill()
                done, _ = await asyncio.wait(pushers, timeout=30)
                assert len(done) == len(pushers), "a pusher hung after the kill"
                for task in done:
                    error = task.exception()
                    if error is not None and not isinstance(error, CUT_OFF):
                        raise error
        finally:
            regd.kill()

    try:
        for _ in range(6):
            with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                runner.run(round_trip())
            _check_store(regd.data_dir)
        for how in ("monolithic", "streamed", "chunked", "manifest"):
            assert methods[how] >= 1, f"no {how} push was acknowledged in 6 rounds: {methods}"

        async def final() -> None:
            regd.start()
            async with aiohttp.ClientSession() as http:
                for digest, data in acked.items():
                    kind = "manifests" if data.startswith(b'{"schemaVersion"') else "blobs"
                    resp = await http.get(f"{base}/v2/library/crash/{kind}/{digest}")
                    assert resp.status == 200 and await resp.read() == data

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(final())
        assert regd.stop() == 0
    finally:
        regd.close()
