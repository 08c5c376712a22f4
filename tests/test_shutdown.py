"""Stopping and starting a real ``regd serve``: SIGTERM/SIGINT in the middle of pushes and
pulls lose nothing stored and every cut-off upload resumes; start-up problems are one
line and a non-zero exit."""

from __future__ import annotations

import asyncio
import hashlib
import os
import re
import signal
import socket
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.regd_process import RegdProcess, free_port

GRACE = 3.0
NAME = "library/stop"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture
def regd(tmp_path: Path) -> Iterator[RegdProcess]:
    process = RegdProcess(tmp_path, {"server": {"shutdown_grace": GRACE}})
    process.start()
    yield process
    process.close()


async def _push(http: aiohttp.ClientSession, base: str, data: bytes) -> None:
    resp = await http.post(f"{base}/v2/{NAME}/blobs/uploads/", params={"digest": _digest(data)}, data=data)
    assert resp.status == 201, await resp.text()


async def _start_upload(http: aiohttp.ClientSession, base: str) -> str:
    resp = await http.post(f"{base}/v2/{NAME}/blobs/uploads/")
    assert resp.status == 202
    return resp.headers["Location"]


def _stalling(first: bytes, rest: bytes, resume: asyncio.Event) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        yield first
        await resume.wait()
        yield rest

    return body()


async def _slow_read(http: aiohttp.ClientSession, url: str, started: asyncio.Event) -> bytes:
    async with http.get(url) as resp:
        assert resp.status == 200
        started.set()
        parts = []
        async for chunk in resp.content.iter_chunked(256 * 1024):
            parts.append(chunk)
            await asyncio.sleep(0.02)
        return b"".join(parts)


async def _resume(http: aiohttp.ClientSession, base: str, location: str, data: bytes) -> None:
    """The client side of resuming: ask where the session stands, send the rest, commit."""
    resp = await http.get(f"{base}{location}")
    assert resp.status == 204, await resp.text()
    # Range is inclusive; an empty session says 0-0 (these never hold exactly one byte).
    last = int(resp.headers["Range"].split("-")[1])
    offset = last + 1 if last else 0
    assert offset <= len(data)
    if offset < len(data):
        headers = {"Content-Range": f"{offset}-{len(data) - 1}", "Content-Type": "application/octet-stream"}
        resp = await http.patch(f"{base}{location}", data=data[offset:], headers=headers)
        assert resp.status == 202, await resp.text()
    resp = await http.put(f"{base}{location}", params={"digest": _digest(data)})
    assert resp.status == 201, await resp.text()


async def _stored(http: aiohttp.ClientSession, base: str, data: bytes) -> bool:
    resp = await http.get(f"{base}/v2/{NAME}/blobs/{_digest(data)}")
    return resp.status == 200 and _digest(await resp.read()) == _digest(data)


async def _until(check: Callable[[], Awaitable[bool]], what: str, seconds: float = 20.0) -> None:
    """Poll ``check`` until it holds; fail naming ``what`` after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not after {seconds}s: {what}")
        await asyncio.sleep(0.05)


def _receiving(base: str, count: int) -> Callable[[], Awaitable[bool]]:
    """Whether ``count`` upload sessions are being written right now (the daemon's /metrics)."""

    async def check() -> bool:
        async with aiohttp.ClientSession() as http:
            text = await (await http.get(f"{base}/metrics")).text()
        line = next(x for x in text.splitlines() if x.startswith('regd_upload_sessions{state="receiving"}'))
        return int(float(line.rsplit(" ", 1)[1])) == count

    return check


def _logged(regd: RegdProcess, text: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return text in regd.log()

    return check


def _refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return False
    except OSError:
        return True


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_stop_mid_push_and_pull_loses_nothing_and_cut_off_uploads_resume(
    regd: RegdProcess, sig: signal.Signals
) -> None:
    base = f"http://127.0.0.1:{regd.port}"
    done = [os.urandom(200_000 + i) for i in range(4)]
    big = os.urandom(24 * 1024 * 1024)
    finishing = [os.urandom(700_000), os.urandom(500_000)]  # resume within the grace time
    cut_off = [os.urandom(1_500_000), os.urandom(800_000)]  # still waiting when it ends
    resume_finishing, never = asyncio.Event(), asyncio.Event()

    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(_push(http, base, data) for data in [*done, big]))
        finishing_at = [await _start_upload(http, base) for _ in finishing]
        cut_off_at = [await _start_upload(http, base) for _ in cut_off]
        uploads = [
            *((loc, data, resume_finishing) for loc, data in zip(finishing_at, finishing, strict=True)),
            *((loc, data, never) for loc, data in zip(cut_off_at, cut_off, strict=True)),
        ]
        patches = [
            asyncio.create_task(http.patch(f"{base}{loc}", data=_stalling(d[:300_000], d[300_000:], ev)))
            for loc, d, ev in uploads
        ]
        pulling = asyncio.Event()
        pull = asyncio.create_task(_slow_read(http, f"{base}/v2/{NAME}/blobs/{_digest(big)}", pulling))
        await _until(_receiving(base, len(uploads)), "every PATCH is being written")
        await asyncio.wait_for(pulling.wait(), 20)

        regd.send(sig)
        await _until(lambda: asyncio.to_thread(_refused, regd.port), "no longer accepting")
        resume_finishing.set()

        assert _digest(await asyncio.wait_for(pull, 30)) == _digest(big)  # in-flight pull finished
        for task in patches[: len(finishing)]:
            resp = await asyncio.wait_for(task, 30)
            assert resp.status == 202, await resp.text()  # in-flight upload finished
        for task in patches[len(finishing) :]:
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(task, 30)  # cut off at the end of the grace time
        code = await asyncio.to_thread(regd.wait, 30)

    assert code == 0, regd.log()
    log = regd.log()
    # The grace time ended the wait (not a second signal, not an early exit): the two
    # finishing uploads completed inside it, the other two were cut off at its end.
    # One line per worker process that had some of them (one or two with "auto").
    cut = re.findall(r"grace time over: cutting off (\d+) requests still in flight", log)
    assert sum(map(int, cut)) == 2, log
    assert "stopped" in log and "Traceback" not in log
    assert " 499 " in log  # the cut-off uploads, in the access log
    assert not (regd.data_dir / "regd.db-wal").exists()  # the database was closed cleanly
    regd.notify.wait_for("STOPPING=1", 1)

    regd.start()
    async with aiohttp.ClientSession() as http:
        for data in [*done, big]:
            assert await _stored(http, base, data)
        for location, data, _ in uploads:
            await _resume(http, base, location, data)
            assert await _stored(http, base, data)
    assert regd.stop() == 0


# -- start-up problems: one line, non-zero exit --------------------------------------------


def _start_fails(regd: RegdProcess, expected: int = 1) -> str:
    """The one line a start-up failure prints; exit 2 for a configuration error, else 1."""
    regd.start(wait=False)
    code = regd.wait(30)
    output = regd.log().strip()
    regd.close()
    assert code == expected, output
    assert "Traceback" not in output
    # The last line says what is wrong; lines before it, if any, are log lines.
    *logged, line = output.splitlines()
    assert line.startswith("regd: ")
    assert not [x for x in logged if x.startswith("regd: ") or not x[:4].isdigit()], output
    return line


def test_a_configuration_error_is_one_line(tmp_path: Path) -> None:
    regd = RegdProcess(tmp_path, {"server": {"log_format": "xml"}})
    assert "log_format" in _start_fails(regd, 2)


def test_an_unknown_key_is_one_line(tmp_path: Path) -> None:
    regd = RegdProcess(tmp_path, {"server": {"lisen": "x"}})
    assert "unknown key 'lisen'" in _start_fails(regd, 2)


def test_a_data_directory_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    regd = RegdProcess(tmp_path)
    regd.data_dir.write_text("a file, not a directory")
    line = _start_fails(regd)
    assert "data directory" in line and str(regd.data_dir) in line


def test_a_database_that_is_not_sqlite_is_one_line(tmp_path: Path) -> None:
    regd = RegdProcess(tmp_path)
    regd.data_dir.mkdir()
    (regd.data_dir / "regd.db").write_bytes(b"this is not a database" * 100)
    line = _start_fails(regd)
    assert "regd.db" in line


def _made_database(tmp_path: Path) -> RegdProcess:
    """A data directory with a real database and a few blobs, the daemon stopped."""
    regd = RegdProcess(tmp_path)
    regd.start()

    async def push() -> None:
        async with aiohttp.ClientSession() as http:
            for i in range(3):
                await _push(http, f"http://127.0.0.1:{regd.port}", os.urandom(5000 + i))

    asyncio.run(push())
    assert regd.stop() == 0
    return regd


def test_a_damaged_database_stops_the_start_in_one_line_and_is_left_untouched(tmp_path: Path) -> None:
    regd = _made_database(tmp_path)
    db = regd.data_dir / "regd.db"
    with sqlite3.connect(db) as conn:  # pages that quick_check reads: a big table
        conn.execute("CREATE TABLE filler (x BLOB)")
        conn.executemany("INSERT INTO filler VALUES (?)", [(os.urandom(300),) for _ in range(2000)])
    conn.close()
    raw = bytearray(db.read_bytes())
    page = 4096
    raw[page * 3 : page * 3 + 2000] = os.urandom(2000)  # a b-tree page in the middle
    db.write_bytes(bytes(raw))
    before = hashlib.sha256(db.read_bytes()).hexdigest()

    line = _start_fails(regd)

    assert line.startswith(f"regd: database {db} is damaged (")
    assert "restore it from a backup (regd restore BACKUP)" in line
    assert hashlib.sha256(db.read_bytes()).hexdigest() == before  # not re-initialised, not touched


def test_a_database_of_a_newer_regd_stops_the_start_in_one_line(tmp_path: Path) -> None:
    regd = _made_database(tmp_path)
    db = regd.data_dir / "regd.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 9999")
    conn.close()

    line = _start_fails(regd)

    assert f"cannot open database {db}: its schema version 9999 is newer than this regd's" in line
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 9999
    conn.close()


def test_a_lost_database_beside_stored_blobs_is_not_re_initialised(tmp_path: Path) -> None:
    regd = _made_database(tmp_path)
    for name in ("regd.db", "regd.db-wal", "regd.db-shm"):
        (regd.data_dir / name).unlink(missing_ok=True)

    line = _start_fails(regd)

    assert f"database {regd.data_dir / 'regd.db'} is missing but" in line
    assert not (regd.data_dir / "regd.db").exists()


def test_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        regd = RegdProcess(tmp_path, port=port)
        line = _start_fails(regd)
    assert f"cannot listen on 127.0.0.1:{port}" in line
    assert line.endswith("Address already in use")


async def test_a_second_signal_cuts_the_grace_time_short(tmp_path: Path) -> None:
    regd = RegdProcess(tmp_path, {"server": {"shutdown_grace": 60.0}})
    regd.start()
    base = f"http://127.0.0.1:{regd.port}"
    data, never = os.urandom(400_000), asyncio.Event()
    big = os.urandom(32 * 1024 * 1024)
    try:
        async with aiohttp.ClientSession() as http:
            await _push(http, base, big)
            # A pull whose client stops reading after the headers: stuck in sendfile.
            stuck = await http.get(f"{base}/v2/{NAME}/blobs/{_digest(big)}")
            assert stuck.status == 200
            location = await _start_upload(http, base)
            patch = asyncio.create_task(
                http.patch(f"{base}{location}", data=_stalling(data[:100_000], data[100_000:], never))
            )
            await _until(_receiving(base, 1), "the PATCH is being written")
            regd.send(signal.SIGTERM)
            await _until(_logged(regd, "SIGTERM: stopping"), "the daemon took the first signal")
            regd.send(signal.SIGINT)
            # 30 s, half the 60 s grace time: only the second signal can end it this soon.
            code = await asyncio.to_thread(regd.wait, 30)
            with pytest.raises(aiohttp.ClientError):
                await asyncio.wait_for(patch, 10)
            stuck.close()
        assert code == 0
        log = regd.log()
        # One line per worker process that had some of them (one or two with "auto").
        cut = re.findall(r"second signal: cutting off (\d+) requests", log)
        assert sum(map(int, cut)) == 2, log
        # Both are in the access log as cut off: the upload in its handler, the pull
        # in the middle of its response.
        assert f"PATCH {location} 499 " in log
        assert f"GET /v2/{NAME}/blobs/{_digest(big)} 499 " in log

        regd.start()
        async with aiohttp.ClientSession() as http:
            await _resume(http, base, location, data)
            assert await _stored(http, base, data)
    finally:
        regd.close()
