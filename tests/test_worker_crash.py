"""A process that dies in the middle of an upload (kill -9): its sessions are resumable
at once. With ``[server] workers = 2`` the supervisor releases the sessions a dead worker
held; a single process is recovered by its next start."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.regd_process import RegdProcess

NAME = "library/crash"


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _children(pid: int) -> list[int]:
    return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


async def _metric_receiving(base: str) -> int:
    async with aiohttp.ClientSession() as http:
        text = await (await http.get(f"{base}/metrics")).text()
    line = next(x for x in text.splitlines() if x.startswith('regd_upload_sessions{state="receiving"}'))
    return int(float(line.rsplit(" ", 1)[1]))


async def _wait_receiving(base: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while await _metric_receiving(base) != count:
        assert time.monotonic() < deadline, f"{count} sessions never were being written"
        await asyncio.sleep(0.05)


def _stalled(first: bytes, never: asyncio.Event) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        yield first
        await never.wait()
        yield b"never sent"

    return body()


async def _start_stalled_patch(
    base: str, data: bytes
) -> tuple[str, asyncio.Task[object], aiohttp.ClientSession]:
    """A session with a PATCH in flight that sent ``data[:500_000]`` and then stalls."""
    http = aiohttp.ClientSession()
    resp = await http.post(f"{base}/v2/{NAME}/blobs/uploads/")
    assert resp.status == 202
    location = resp.headers["Location"]
    never = asyncio.Event()
    patch = asyncio.create_task(http.patch(f"{base}{location}", data=_stalled(data[:500_000], never)))
    await _wait_receiving(base, 1)
    return location, patch, http


async def _resume_and_finish(base: str, location: str, data: bytes) -> None:
    """What a client does after its connection broke: ask where the session stands,
    send the rest, commit; then the blob is served byte for byte."""
    async with aiohttp.ClientSession() as http:
        resp = await http.get(f"{base}{location}")
        assert resp.status == 204, await resp.text()
        last = int(resp.headers["Range"].split("-")[1])
        offset = last + 1 if last else 0  # 0-0: nothing kept (never exactly one byte here)
        assert offset < len(data)
        headers = {"Content-Range": f"{offset}-{len(data) - 1}"}
        resp = await http.patch(f"{base}{location}", data=data[offset:], headers=headers)
        assert resp.status == 202, await resp.text()
        resp = await http.put(f"{base}{location}", params={"digest": _digest(data)})
        assert resp.status == 201, await resp.text()
        resp = await http.get(f"{base}/v2/{NAME}/blobs/{_digest(data)}")
        assert resp.status == 200 and _digest(await resp.read()) == _digest(data)


async def _drop(patch: asyncio.Task[object], http: aiohttp.ClientSession) -> None:
    patch.cancel()
    await asyncio.gather(patch, return_exceptions=True)
    await http.close()


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[RegdProcess]:
    process = RegdProcess(tmp_path, {"server": {"workers": 2}})
    yield process
    process.close()


def test_an_upload_held_by_a_killed_worker_resumes_at_once(workers: RegdProcess) -> None:
    workers.start()
    base = f"http://127.0.0.1:{workers.port}"
    data = os.urandom(2_000_000)
    old = set(_children(workers.pid))

    async def scenario() -> None:
        location, patch, http = await _start_stalled_patch(base, data)
        for pid in old:  # whichever worker holds the PATCH dies
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (len(now := set(_children(workers.pid))) == 2 and not now & old):
            assert time.monotonic() < deadline, f"workers not replaced:\n{workers.log()}"
            await asyncio.sleep(0.1)
        await _drop(patch, http)
        # No restart of the daemon: the replacement workers serve the session at once.
        await _resume_and_finish(base, location, data)

    asyncio.run(scenario())
    assert "1 upload sessions of dead worker pid" in workers.log()
    assert workers.stop() == 0


def test_an_upload_cut_off_by_kill_9_of_the_single_process_resumes_after_the_restart(
    tmp_path: Path,
) -> None:
    regd = RegdProcess(tmp_path)
    base = f"http://127.0.0.1:{regd.port}"
    data = os.urandom(2_000_000)
    try:
        regd.start()

        async def cut_off() -> str:
            location, patch, http = await _start_stalled_patch(base, data)
            regd.kill()
            await _drop(patch, http)
            return location

        location = asyncio.run(cut_off())
        regd.start()
        assert "1 upload sessions cut off by the last stop can resume" in regd.log()
        asyncio.run(_resume_and_finish(base, location, data))
        assert regd.stop() == 0
    finally:
        regd.close()
