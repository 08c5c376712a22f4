"""The scrub (regd/scrub.py): xxh3-128 recorded at commit, damaged and lost blobs found,
confirmed with sha256, quarantined, answered as unknown, reported with the images that
use them, repaired by a push; files no row knows reported and removed by GC."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
import xxhash

from regd.gc import Parameters
from regd.scrub import RateLimit, ScrubBusyError
from regd.services import SERVICES
from regd.storage import fsio
from regd.storage.layout import Layout
from tests.auth_support import ADMIN, basic, create_user
from tests.conftest import Client, push_blob, push_image, sha256
from tests.regd_process import RegdProcess

NAME = "library/app"


def _blob_path(data_dir: Path, digest: str) -> Path:
    algorithm, hexdigest = digest.split(":")
    return data_dir / "blobs" / algorithm / hexdigest[:2] / hexdigest


def _row(data_dir: Path, digest: str) -> tuple[Any, ...]:
    with sqlite3.connect(data_dir / "regd.db") as db:
        row = db.execute(
            "SELECT xxh3, quarantined_at, quarantine_reason FROM blobs WHERE digest = ?", (digest,)
        ).fetchone()
    db.close()
    assert row is not None
    return tuple(row)


def _flip_a_byte(path: Path) -> None:
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))


def _services(client: Client) -> Any:
    return client.server.app[SERVICES]  # type: ignore[union-attr]


async def _metrics(client: Client) -> str:
    return await (await client.get("/metrics")).text()


def _metric(text: str, line_start: str) -> float:
    return sum(float(x.rsplit(" ", 1)[1]) for x in text.splitlines() if x.startswith(line_start + " "))


async def test_every_commit_records_the_xxh3_of_the_bytes(client: Client, data_dir: Path) -> None:
    monolithic = os.urandom(70_000)
    digest = await push_blob(client, NAME, monolithic)
    chunked = os.urandom(90_000)
    resp = await client.post(f"/v2/{NAME}/blobs/uploads/")
    location = resp.headers["Location"]
    await client.patch(location, data=chunked[:40_000], headers={"Content-Range": "0-39999"})
    rest = {"Content-Range": f"40000-{len(chunked) - 1}"}
    await client.patch(location, data=chunked[40_000:], headers=rest)
    assert (await client.put(location, params={"digest": sha256(chunked)})).status == 201
    manifest_digest, manifest, _ = await push_image(client, NAME, "v1")

    assert _row(data_dir, digest)[0] == xxhash.xxh3_128_hexdigest(monolithic)
    assert _row(data_dir, sha256(chunked))[0] == xxhash.xxh3_128_hexdigest(chunked)
    assert _row(data_dir, manifest_digest)[0] == xxhash.xxh3_128_hexdigest(manifest)


async def test_a_damaged_blob_is_quarantined_reported_answered_unknown_and_repaired_by_a_push(
    client: Client, data_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    manifest_digest, _, blobs = await push_image(client, NAME, "v1")
    layer = blobs[1]
    _flip_a_byte(_blob_path(data_dir, sha256(layer)))

    report = await _services(client).scrub.run()

    assert report.damaged == [sha256(layer)] and report.missing == []
    assert report.checked == 4  # config, two layers, the manifest
    assert _row(data_dir, sha256(layer))[2] == "damaged"
    assert not _blob_path(data_dir, sha256(layer)).exists()
    assert len(os.listdir(data_dir / "quarantine")) == 1
    # Answered as unknown: a client's HEAD says "push it", the pull of it fails cleanly.
    assert (await client.head(f"/v2/{NAME}/blobs/{sha256(layer)}")).status == 404
    assert (await client.get(f"/v2/{NAME}/blobs/{sha256(layer)}")).status == 404
    assert (await client.get(f"/v2/{NAME}/blobs/{sha256(blobs[0])}")).status == 200  # the rest is fine
    # Reported: the log names the image, /metrics counts it.
    assert any(f"{NAME}@{manifest_digest} (v1)" in r.getMessage() for r in caplog.records)
    text = await _metrics(client)
    assert _metric(text, "regd_quarantined_blobs") == 1
    assert _metric(text, 'regd_scrub_findings_total{kind="damaged"}') >= 1

    # The push that repairs it: the client uploads it again, as docker would after the 404.
    await push_blob(client, NAME, layer)
    assert (await client.head(f"/v2/{NAME}/blobs/{sha256(layer)}")).status == 200
    resp = await client.get(f"/v2/{NAME}/blobs/{sha256(layer)}")
    assert await resp.read() == layer
    assert _row(data_dir, sha256(layer))[1:] == (None, None)
    assert (await _services(client).scrub.run()).clean
    assert _metric(await _metrics(client), "regd_quarantined_blobs") == 0


async def test_a_missing_blob_file_is_quarantined_as_missing(client: Client, data_dir: Path) -> None:
    _, _, blobs = await push_image(client, NAME, "v1")
    _blob_path(data_dir, sha256(blobs[0])).unlink()

    report = await _services(client).scrub.run()

    assert report.missing == [sha256(blobs[0])] and report.damaged == []
    assert _row(data_dir, sha256(blobs[0]))[2] == "missing"
    assert (await client.head(f"/v2/{NAME}/blobs/{sha256(blobs[0])}")).status == 404


@pytest.mark.parametrize("recorded", ["0" * 32, None], ids=["wrong checksum", "stored before checksums"])
async def test_a_blob_whose_checksum_is_wrong_or_absent_is_checked_by_sha256_and_gets_the_right_one(
    client: Client, data_dir: Path, recorded: str | None
) -> None:
    data = os.urandom(5000)
    digest = await push_blob(client, NAME, data)
    with sqlite3.connect(data_dir / "regd.db") as db:
        db.execute("UPDATE blobs SET xxh3 = ? WHERE digest = ?", (recorded, digest))
    db.close()

    report = await _services(client).scrub.run()

    assert report.clean and report.checksums_recorded == 1
    assert _row(data_dir, digest) == (xxhash.xxh3_128_hexdigest(data), None, None)
    assert (await client.get(f"/v2/{NAME}/blobs/{digest}")).status == 200


async def test_files_no_row_knows_are_reported_and_removed_by_the_next_collection(
    client: Client, data_dir: Path
) -> None:
    stray = os.urandom(300)
    path = _blob_path(data_dir, sha256(stray))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(stray)
    old = time.time() - 3 * 86400
    os.utime(path, (old, old))

    report = await _services(client).scrub.run()
    assert report.unknown_files == 1 and report.clean
    assert _metric(await _metrics(client), "regd_scrub_unknown_files") == 1

    await _services(client).gc.run(Parameters(), grace_period=0)
    assert not path.exists()


async def test_one_scrub_at_a_time(client: Client, data_dir: Path) -> None:
    fd = fsio.try_lock_sync(Layout(data_dir).scrub_lock)  # as if `regd scrub` were running
    assert fd is not None
    try:
        with pytest.raises(ScrubBusyError):
            await _services(client).scrub.run()
    finally:
        fsio.unlock_sync(fd)


def test_the_rate_limit_sleeps_the_reading_thread_to_the_average_rate() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    pace = RateLimit(1000, clock=lambda: now[0], sleep=sleep)
    pace(500)  # 0.5 s worth at once: wait it out
    now[0] += 0.2  # reading took 0.2 s
    pace(100)  # 0.6 s worth by t=0.7: no wait
    pace(900)  # 1.5 s worth by t=0.7: wait 0.8 s
    assert slept == pytest.approx([0.5, 0.8])
    unlimited = RateLimit(0, clock=lambda: 0.0, sleep=sleep)
    unlimited(10**9)
    assert len(slept) == 2


async def test_the_api_reports_the_last_run_and_the_quarantined_blobs_with_their_images(
    auth_client: Client, data_dir: Path
) -> None:
    from tests.auth_support import push_image_as

    manifest_digest, _ = await push_image_as(auth_client, NAME, "v1", ADMIN)
    empty = await auth_client.get("/api/v2.0/system/scrub", headers=ADMIN)
    assert orjson.loads(await empty.read()) == {"last_run": None, "quarantined": []}
    with sqlite3.connect(data_dir / "regd.db") as db:
        layer = db.execute(
            "SELECT digest FROM manifest_blobs WHERE media_type LIKE '%layer%' LIMIT 1"
        ).fetchone()[0]
    db.close()
    _flip_a_byte(_blob_path(data_dir, layer))
    await _services(auth_client).scrub.run()

    resp = await auth_client.get("/api/v2.0/system/scrub", headers=ADMIN)
    body = orjson.loads(await resp.read())

    assert body["last_run"]["status"] == "Success" and body["last_run"]["damaged"] == 1
    [entry] = body["quarantined"]
    assert entry["digest"] == layer and entry["reason"] == "damaged"
    assert entry["artifacts"] == [{"repository_name": NAME, "digest": manifest_digest, "tags": ["v1"]}]
    await create_user(auth_client, "alice")
    assert (await auth_client.get("/api/v2.0/system/scrub", headers=basic("alice"))).status == 403
    assert (await auth_client.get("/api/v2.0/system/scrub")).status == 401


def test_regd_scrub_beside_a_running_daemon_exits_3_and_names_the_image(tmp_path: Path) -> None:
    regd = RegdProcess(tmp_path)
    base = f"http://127.0.0.1:{regd.port}"
    layer = os.urandom(20_000)
    try:
        regd.start()

        async def push() -> None:
            import aiohttp

            async with aiohttp.ClientSession() as http:
                resp = await http.post(f"{base}/v2/{NAME}/blobs/uploads/", params={"digest": sha256(layer)},
                                       data=layer)
                assert resp.status == 201
                head = await http.head(f"{base}/v2/{NAME}/blobs/{sha256(layer)}")
                assert head.status == 200  # now in the daemon's lookup cache

        asyncio.run(push())
        _flip_a_byte(_blob_path(regd.data_dir, sha256(layer)))
        result = subprocess.run(
            [sys.executable, "-m", "regd", "scrub", "--data-dir", str(regd.data_dir), "--rate-limit", "0"],
            capture_output=True, text=True, timeout=120, check=False,
        )
        assert result.returncode == 3, result.stdout + result.stderr
        assert "1 damaged, 0 missing" in result.stdout
        assert f"quarantined {sha256(layer)} (damaged); affects no image" in result.stdout
        assert regd.alive()

        async def unknown_now() -> None:
            import aiohttp

            async with aiohttp.ClientSession() as http:
                resp = await http.head(f"{base}/v2/{NAME}/blobs/{sha256(layer)}")
                assert resp.status == 404  # the daemon's cached lookup was dropped

        asyncio.run(unknown_now())
        assert regd.stop() == 0
    finally:
        regd.close()


def test_the_scheduled_scrub_runs_in_the_daemon(tmp_path: Path) -> None:
    regd = RegdProcess(tmp_path, {"scrub": {"schedule": "0 * * * * *"}})  # every minute
    try:
        regd.start()
        deadline = time.monotonic() + 90
        while "scrub 1 done:" not in regd.log():
            assert time.monotonic() < deadline, regd.log()
            time.sleep(0.5)
        with sqlite3.connect(regd.data_dir / "regd.db") as db:
            assert db.execute("SELECT kind, status FROM scrub_runs").fetchall() == [("SCHEDULE", "Success")]
        db.close()
        assert regd.stop() == 0
    finally:
        regd.close()
