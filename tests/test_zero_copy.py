"""Blob bytes never pass through Python when the kernel can move them, and memory does
not grow with blob size. These run the app under uvloop, as ``regd serve`` does.

Blob bodies go out by sendfile(2), or (to loopback peers under ``blob_send = "auto"``)
by write(2) from a mapping of the file, where the kernel copies them once; either way no
byte is copied in user space."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import uvloop
from aiohttp import web

from regd.api.sendfile import SendfileResponse
from regd.app import create_app
from tests.conftest import make_config


@contextlib.asynccontextmanager
async def served(data_dir: Path, **server: object) -> AsyncIterator[int]:
    """The app on 127.0.0.1, under the running loop; yields its port."""
    runner = web.AppRunner(create_app(make_config(data_dir, server=dict(server))))
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield runner.addresses[0][1]
    finally:
        await runner.cleanup()


def run_uvloop(coro):  # type: ignore[no-untyped-def]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def test_blob_get_under_uvloop_goes_through_os_sendfile(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[int] = []
    real_sendfile = os.sendfile

    def spy(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        n = real_sendfile(out_fd, in_fd, offset, count)
        if stat.S_ISSOCK(os.fstat(out_fd).st_mode):  # not a cold window's read-ahead
            sent.append(n)
        return n

    monkeypatch.setattr(os, "sendfile", spy)
    data = os.urandom(9 * 1024 * 1024 + 3)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()

    async def scenario() -> None:
        assert isinstance(asyncio.get_running_loop(), uvloop.Loop)
        async with served(tmp_path / "data", blob_send="sendfile") as port:
            base = f"http://127.0.0.1:{port}/v2/library/big"
            async with aiohttp.ClientSession() as http:
                resp = await http.post(
                    f"{base}/blobs/uploads/", params={"digest": digest}, data=io.BytesIO(data)
                )
                assert resp.status == 201
                before = SendfileResponse.sent_zero_copy
                resp = await http.get(f"{base}/blobs/{digest}")
                assert await resp.read() == data
                resp = await http.get(f"{base}/blobs/{digest}", headers={"Range": "bytes=1000-2000999"})
                assert resp.status == 206
                assert await resp.read() == data[1000:2001000]
                # keep-alive still works after a sendfile body
                resp = await http.get(f"{base}/blobs/{digest}", headers={"Range": "bytes=0-9"})
                assert await resp.read() == data[:10]
                assert SendfileResponse.sent_zero_copy - before == len(data) + 2_000_000 + 10

    run_uvloop(scenario())
    assert sum(sent) == len(data) + 2_000_000 + 10


def _evict(path: Path) -> None:
    """Drop a file's pages from the page cache (written back first: dirty pages stay)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def test_a_cold_blob_is_read_into_the_page_cache_by_a_thread_then_sent_zero_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cold pages are never read by sendfile on the event loop: a thread reads them ahead
    (regd.api.sendfile.read_ahead_sync); cached ones go straight out by sendfile."""
    from regd.api import sendfile as module

    threads: list[str] = []
    real_read_ahead = module.read_ahead_sync

    def spy(fd: int, offset: int, count: int, ahead: int = 0) -> None:
        threads.append(threading.current_thread().name)
        real_read_ahead(fd, offset, count, ahead)

    monkeypatch.setattr(module, "read_ahead_sync", spy)
    data = os.urandom(5 * 1024 * 1024 + 7)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blob = tmp_path / "data" / "blobs" / "sha256" / digest[7:9] / digest[7:]

    async def scenario() -> None:
        async with served(tmp_path / "data", blob_send="sendfile") as port:
            base = f"http://127.0.0.1:{port}/v2/library/cold"
            async with aiohttp.ClientSession() as http:
                resp = await http.post(
                    f"{base}/blobs/uploads/", params={"digest": digest}, data=io.BytesIO(data)
                )
                assert resp.status == 201
                assert blob.is_file(), sorted(p.name for p in blob.parent.parent.iterdir())
                await asyncio.to_thread(_evict, blob)
                before_cold, before_zero = SendfileResponse.read_ahead, SendfileResponse.sent_zero_copy
                resp = await http.get(f"{base}/blobs/{digest}")
                assert await resp.read() == data
                # the first window was cold and read ahead in a thread (the kernel's own
                # readahead, started by that read, may have brought later ones in), and
                # every byte went out zero-copy
                read_ahead = SendfileResponse.read_ahead - before_cold
                assert 2 * 1024 * 1024 <= read_ahead <= len(data)
                assert SendfileResponse.sent_zero_copy - before_zero == len(data)
                assert threads and all(name != "MainThread" for name in threads)
                # now cached: sendfile only, no read-ahead
                before_cold = SendfileResponse.read_ahead
                resp = await http.get(f"{base}/blobs/{digest}", headers={"Range": "bytes=100-3000099"})
                assert await resp.read() == data[100:3000100]
                assert SendfileResponse.read_ahead == before_cold

    run_uvloop(scenario())


def test_the_page_cache_probe_tells_cached_from_uncached(tmp_path: Path) -> None:
    from regd.api.sendfile import cached

    path = tmp_path / "f"
    path.write_bytes(os.urandom(4 * 1024 * 1024))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.pread(fd, 4 * 1024 * 1024, 0)
        assert cached(fd, 0, 4 * 1024 * 1024) is True
        _evict(path)
        assert cached(fd, 0, 4 * 1024 * 1024) is False
        os.pread(fd, 4096, 0)  # the first page only (and perhaps some readahead)
        assert cached(fd, 0, 4096) is True
    finally:
        os.close(fd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


async def _stream(total: int, block: bytes, hasher: hashlib._Hash) -> AsyncIterator[bytes]:
    sent = 0
    counter = 0
    while sent < total:
        chunk = counter.to_bytes(8, "big") + block[8:]
        counter += 1
        hasher.update(chunk)
        sent += len(chunk)
        yield chunk


def test_one_gib_push_and_pull_keep_daemon_rss_flat(tmp_path: Path) -> None:
    port = _free_port()
    log = (tmp_path / "regd.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from regd.cli import main; main()",
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
            "--data-dir",
            str(tmp_path / "data"),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, "REGD_STORAGE_FSYNC": "false", "REGD_AUTH_ENABLED": "false"},
    )
    try:
        base = f"http://127.0.0.1:{port}"

        async def scenario() -> tuple[int, int, int]:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as http:
                for _ in range(100):
                    try:
                        if (await http.get(f"{base}/v2/")).status in (200, 401):
                            break
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.1)
                # warm up every code path once with a small blob
                small = b"warm" * 1000
                small_digest = "sha256:" + hashlib.sha256(small).hexdigest()
                await http.post(
                    f"{base}/v2/library/big/blobs/uploads/", params={"digest": small_digest}, data=small
                )
                await (await http.get(f"{base}/v2/library/big/blobs/{small_digest}")).read()
                baseline = _rss_kib(proc.pid, "VmRSS")

                total = 1024 * 1024 * 1024
                hasher = hashlib.sha256()
                resp = await http.post(f"{base}/v2/library/big/blobs/uploads/")
                location = resp.headers["Location"]
                resp = await http.patch(f"{base}{location}", data=_stream(total, os.urandom(1 << 20), hasher))
                assert resp.status == 202, await resp.text()
                digest = "sha256:" + hasher.hexdigest()
                resp = await http.put(f"{base}{location}", params={"digest": digest})
                assert resp.status == 201, await resp.text()
                after_push = _rss_kib(proc.pid, "VmHWM")

                check = hashlib.sha256()
                received = 0
                async with http.get(f"{base}/v2/library/big/blobs/{digest}") as resp:
                    async for chunk in resp.content.iter_chunked(1 << 20):
                        check.update(chunk)
                        received += len(chunk)
                assert received == total
                assert "sha256:" + check.hexdigest() == digest
                return baseline, after_push, _rss_kib(proc.pid, "VmHWM")

        baseline, after_push, after_pull = run_uvloop(scenario())
        assert after_push - baseline < 64 * 1024, (baseline, after_push)
        assert after_pull - baseline < 64 * 1024, (baseline, after_pull)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
        time.sleep(0)


def test_read_ahead_brings_an_evicted_range_into_the_page_cache(tmp_path: Path) -> None:
    from regd.api.sendfile import cached, read_ahead_sync

    path = tmp_path / "f"
    path.write_bytes(os.urandom(6 * 1024 * 1024))
    fd = os.open(path, os.O_RDONLY)
    try:
        _evict(path)
        assert cached(fd, 2 * 1024 * 1024, 2 * 1024 * 1024) is False
        read_ahead_sync(fd, 2 * 1024 * 1024, 2 * 1024 * 1024)
        assert cached(fd, 2 * 1024 * 1024, 2 * 1024 * 1024) is True
    finally:
        os.close(fd)


def test_a_loopback_peer_gets_blob_bodies_written_from_a_mapping_in_threads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``blob_send = "auto"`` (the default): to a client on 127.0.0.1 the body is written
    from a mapping of the blob file, in hops run by threads; no sendfile to the socket,
    nothing read on the event loop, a cold file included, a slow reader included."""
    from regd.api import sendfile as module

    hops: list[tuple[str, int, int]] = []
    real_hop = module.write_mapped_sync
    to_socket: list[int] = []
    real_sendfile = os.sendfile

    def spy_hop(out_fd: int, in_fd: int, offset: int, count: int) -> int:
        n = real_hop(out_fd, in_fd, offset, count)
        hops.append((threading.current_thread().name, count, n))
        return n

    def spy_sendfile(out_fd: int, in_fd: int, offset: int | None, count: int) -> int:
        if stat.S_ISSOCK(os.fstat(out_fd).st_mode):
            to_socket.append(count)
        return real_sendfile(out_fd, in_fd, offset, count)

    monkeypatch.setattr(module, "write_mapped_sync", spy_hop)
    monkeypatch.setattr(os, "sendfile", spy_sendfile)
    data = os.urandom(9 * 1024 * 1024 + 3)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blob = tmp_path / "data" / "blobs" / "sha256" / digest[7:9] / digest[7:]

    def slow_get(port: int, path: str) -> bytes:
        """A client that reads little at a time through a small receive buffer."""
        with socket.create_connection(("127.0.0.1", port)) as c:
            c.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            c.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
            got = bytearray()
            while chunk := c.recv(256 * 1024):
                got += chunk
                time.sleep(0.0005)
        head, _, body = bytes(got).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), head[:200]
        return body

    async def scenario() -> None:
        async with served(tmp_path / "data") as port:
            base = f"http://127.0.0.1:{port}/v2/library/mapped"
            async with aiohttp.ClientSession() as http:
                resp = await http.post(
                    f"{base}/blobs/uploads/", params={"digest": digest}, data=io.BytesIO(data)
                )
                assert resp.status == 201
                await asyncio.to_thread(_evict, blob)
                before_mapped, before_zero = SendfileResponse.sent_mapped, SendfileResponse.sent_zero_copy
                before_cold = SendfileResponse.read_ahead
                resp = await http.get(f"{base}/blobs/{digest}")  # cold
                assert await resp.read() == data
                # read into the page cache by a thread before it was mapped
                assert SendfileResponse.read_ahead - before_cold >= 2 * 1024 * 1024
                # a range that starts off a page boundary, then keep-alive goes on
                resp = await http.get(f"{base}/blobs/{digest}", headers={"Range": "bytes=1000-5001000"})
                assert resp.status == 206
                assert await resp.read() == data[1000:5001001]
                resp = await http.get(f"{base}/blobs/{digest}", headers={"Range": "bytes=0-9"})
                assert await resp.read() == data[:10]
                assert await asyncio.to_thread(slow_get, port, f"/v2/library/mapped/blobs/{digest}") == data
                sent = SendfileResponse.sent_mapped - before_mapped
                assert sent == 2 * len(data) + 5_000_001 + 10
                assert SendfileResponse.sent_zero_copy == before_zero

    run_uvloop(scenario())
    assert to_socket == []
    assert hops and all(name != "MainThread" for name, _, _ in hops)
    assert all(count <= module.HOP for _, count, _ in hops)
    # the slow reader filled the socket: some hops ended early, and the rest followed
    assert any(n < count for _, count, n in hops)


def test_loopback_peers_are_told_from_the_rest() -> None:
    from regd.api.sendfile import loopback_peer

    class Transport(asyncio.BaseTransport):
        def __init__(self, peer: object) -> None:
            super().__init__()
            self.peer = peer

        def get_extra_info(self, name: str, default: object = None) -> object:
            return self.peer if name == "peername" else default

    for peer, local in (
        (("127.0.0.1", 5000), True),
        (("127.8.9.10", 5000), True),
        (("::1", 5000, 0, 0), True),
        (("::ffff:127.0.0.1", 5000, 0, 0), True),
        (("10.1.2.3", 5000), False),
        (("::ffff:10.1.2.3", 5000, 0, 0), False),
        (("fe80::1%eth0", 5000, 0, 2), False),
        ("/run/regd.sock", False),
        (None, False),
    ):
        assert loopback_peer(Transport(peer)) is local, peer


def test_a_cancelled_hop_waits_for_its_thread_before_the_cancellation_goes_on() -> None:
    """fsio.run_to_end: the mapped hops and read-aheads use descriptors that the response
    closes on its way out; a cancelled request must not leave a thread writing to a
    descriptor number that may already name another socket."""
    from regd.storage import fsio

    ended: list[float] = []

    def slow() -> int:
        time.sleep(0.3)
        ended.append(time.monotonic())
        return 1

    async def scenario() -> float:
        task = asyncio.create_task(fsio.run_to_end(slow))
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic()

    cancelled_at = run_uvloop(scenario())
    assert ended and ended[0] <= cancelled_at
