"""``[server] workers = 2``: worker processes sharing the socket, supervised."""

from __future__ import annotations

import asyncio
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from tests.regd_process import RegdProcess


@pytest.fixture
def regd(tmp_path: Path) -> Iterator[RegdProcess]:
    process = RegdProcess(tmp_path, {"server": {"workers": 2}})
    yield process
    process.close()


def _children(pid: int) -> list[int]:
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(p) for p in path.read_text().split()]


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


async def _traffic(base: str, rounds: int) -> int:
    """Pushes and pulls over many connections (so both workers get some); an upload is
    started on one connection and finished on another. Returns the requests made."""
    requests = 0
    for i in range(rounds):
        data = os.urandom(100_000 + i)
        async with aiohttp.ClientSession() as first:
            resp = await first.post(f"{base}/v2/library/w/blobs/uploads/")
            location = base + resp.headers["Location"]
            resp = await first.patch(location, data=data[:50_000], headers={"Content-Range": "0-49999"})
            assert resp.status == 202
        async with aiohttp.ClientSession() as second:  # a new connection: maybe another worker
            end = len(data) - 1
            resp = await second.patch(location, data=data[50_000:], headers={"Content-Range": f"50000-{end}"})
            assert resp.status == 202, await resp.text()
            resp = await second.put(location, params={"digest": _digest(data)})
            assert resp.status == 201, await resp.text()
        async with aiohttp.ClientSession() as third:
            resp = await third.get(f"{base}/v2/library/w/blobs/{_digest(data)}")
            assert await resp.read() == data
        requests += 5
    return requests


def _metric(text: str, name: str, **labels: str) -> float:
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_two_workers_share_the_port_and_the_data(regd: RegdProcess) -> None:
    regd.start()  # returns once the supervisor said READY=1: every worker is ready
    workers = _children(regd.pid)
    assert len(workers) == 2
    base = f"http://127.0.0.1:{regd.port}"

    async def scenario() -> None:
        made = await _traffic(base, 12)
        async with aiohttp.ClientSession() as http:
            text = await (await http.get(f"{base}/metrics")).text()
        # /metrics sums every worker's counters, whichever worker answers it
        uploads = _metric(text, "regd_http_requests_total", route="v2 upload", status="202")
        assert uploads == made / 5 * 2
        assert _metric(text, "regd_http_requests_total", route="v2 blob", status="200") == made / 5

    asyncio.run(scenario())
    assert regd.stop() == 0
    regd.notify.wait_for("STOPPING=1", 5)
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


def test_a_dead_worker_is_restarted_and_the_registry_keeps_serving(regd: RegdProcess) -> None:
    regd.start()
    first, second = _children(regd.pid)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        now = _children(regd.pid)
        if len(now) == 2 and first not in now:
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"worker not restarted:\n{regd.log()}")
    assert second in _children(regd.pid)
    asyncio.run(_traffic(f"http://127.0.0.1:{regd.port}", 3))
    assert "worker 0 died; starting it again" in regd.log() or "worker 1 died" in regd.log()
    assert regd.stop() == 0


def test_sighup_reaches_every_worker_and_systemd_hears_ready_again(regd: RegdProcess) -> None:
    regd.start()
    regd.notify.messages.clear()
    regd.send(signal.SIGHUP)
    regd.notify.wait_for("RELOADING=1", 10)
    regd.notify.wait_for("READY=1", 10)
    deadline = time.monotonic() + 10
    while regd.log().count("reloaded:") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert regd.log().count("reloaded:") == 2
    assert regd.stop() == 0


def test_building_the_command_line_imports_no_prometheus_client() -> None:
    """``regd serve`` with workers chooses prometheus_client's multiprocess mode before
    the first import of it; a subcommand whose module imports the services (and so
    regd.metrics) while the parser is built would make every worker count in its own
    memory, and /metrics would show one worker's share."""
    probe = (
        "import sys, regd.cli; regd.cli.build_parser(); "
        "print(sorted(m for m in sys.modules if 'prometheus' in m))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout
