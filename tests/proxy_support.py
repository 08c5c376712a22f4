"""Upstreams for the proxy-cache tests, and the fault-injecting TCP proxy between.

- ``upstream_regd``: a real ``regd serve`` with token auth, listening on 127.0.0.2 with
  its token realm there too, so that the realm is another host than the address regd's
  proxy cache uses for the registry (the fault proxy on 127.0.0.1), as Docker Hub's
  auth.docker.io is another host than registry-1.docker.io.
- ``upstream_distribution``: CNCF distribution 2.8.2 (``docker-registry``) with Basic
  auth from an htpasswd file (bcrypt).
- ``FaultProxy``: forwards TCP to an upstream and, on the upstream-to-regd direction,
  refuses, stalls, cuts, throttles or flips a byte at a given offset of a connection's
  stream; counts the bytes it forwarded that way.
"""

from __future__ import annotations

import asyncio
import base64
import enum
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import bcrypt

from tests.conftest import image_manifest, sha256
from tests.regd_process import RegdProcess, free_port

ADMIN_PASSWORD = "Upstream123"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Mode(enum.Enum):
    PASS = "pass"
    REFUSE = "refuse"  # accept, then close at once
    STALL = "stall"  # forward up to fault_at, then nothing more (connection kept open)
    CUT = "cut"  # forward up to fault_at, then close
    FLIP = "flip"  # flip the byte at fault_at
    THROTTLE = "throttle"  # forward at most `rate` bytes per second
    UNAVAILABLE = "503"  # answer every request 503 (as an overloaded upstream)
    RATE_LIMITED = "429"  # answer every request 429 (as Docker Hub's pull limit)


_CANNED = {
    Mode.UNAVAILABLE: b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    Mode.RATE_LIMITED: b"HTTP/1.1 429 Too Many Requests\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
}


class FaultProxy:
    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.mode = Mode.PASS
        self.fault_at = 0
        self.rate = 1 << 20
        self.forwarded = 0  # upstream -> regd bytes
        self.connections = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        """Stop listening (connections are then refused) and drop open connections."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        try:
            if self.mode is Mode.REFUSE:
                return
            up_reader, up_writer = await asyncio.open_connection(*self.target)
            try:
                await asyncio.gather(self._pipe(reader, up_writer, writer), self._back(up_reader, writer))
            finally:
                up_writer.close()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, client: asyncio.StreamWriter
    ) -> None:
        while data := await reader.read(65536):
            if self.mode is Mode.REFUSE:  # also on connections kept alive from before
                raise ConnectionResetError("refused")
            if self.mode in _CANNED:  # the request goes no further: the "upstream" answers
                client.write(_CANNED[self.mode])
                await client.drain()
                raise ConnectionResetError("answered")
            writer.write(data)
            await writer.drain()
        with suppress(OSError):
            writer.write_eof()

    async def _back(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        offset = 0
        started = time.monotonic()
        while data := await reader.read(65536):
            mode = self.mode
            if mode in (Mode.STALL, Mode.CUT) and offset + len(data) > self.fault_at:
                keep = max(self.fault_at - offset, 0)
                writer.write(data[:keep])
                self.forwarded += keep
                await writer.drain()
                if mode is Mode.STALL:
                    await asyncio.Event().wait()  # until cancelled
                return
            if mode is Mode.FLIP and offset <= self.fault_at < offset + len(data):
                i = self.fault_at - offset
                data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
            offset += len(data)
            self.forwarded += len(data)
            writer.write(data)
            await writer.drain()
            if mode is Mode.THROTTLE:
                ahead = offset / self.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        writer.close()


# -- upstreams -------------------------------------------------------------------------


@dataclass
class Upstream:
    """A registry the tests push to directly (``url``) and regd reaches through ``host``."""

    url: str
    username: str
    password: str

    def auth(self) -> dict[str, str]:
        return basic_header(self.username, self.password)


@contextmanager
def upstream_regd(root: Path) -> Iterator[tuple[Upstream, RegdProcess]]:
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    process = RegdProcess(
        root,
        {
            "server": {"listen": f"127.0.0.2:{port}"},
            "auth": {"enabled": True, "realm": f"http://127.0.0.2:{port}/service/token"},
        },
        env={"REGD_ADMIN_PASSWORD": ADMIN_PASSWORD},
        port=port,
    )
    try:
        process.start()
        yield Upstream(f"http://127.0.0.2:{port}", "admin", ADMIN_PASSWORD), process
    finally:
        process.close()


@contextmanager
def upstream_distribution(root: Path) -> Iterator[Upstream]:
    binary = shutil.which("docker-registry")
    assert binary is not None, "docker-registry (CNCF distribution) is not installed"
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    password = "Distribution1"
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=5)).decode()
    (root / "htpasswd").write_text(f"puller:{hashed}\n")
    config = root / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        "storage:\n"
        f"  filesystem: {{rootdirectory: {root / 'data'}}}\n"
        "  delete: {enabled: true}\n"
        f"http: {{addr: '127.0.0.1:{port}', secret: regd-test}}\n"
        f"auth: {{htpasswd: {{realm: regd-test, path: {root / 'htpasswd'}}}}}\n"
    )
    with (root / "registry.log").open("ab") as log:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with suppress(OSError), __import__("socket").create_connection(("127.0.0.1", port), 0.5):
                break
            time.sleep(0.1)
        yield Upstream(f"http://127.0.0.1:{port}", "puller", password)
    finally:
        process.terminate()
        process.wait(30)


# -- content -----------------------------------------------------------------------------


async def push(upstream: Upstream, name: str, tag: str, blobs: list[bytes]) -> tuple[str, bytes]:
    """Push an image (blobs[0] the config, the rest layers) to the upstream directly."""
    async with aiohttp.ClientSession(headers=upstream.auth()) as session:
        for blob in blobs:
            resp = await session.post(
                f"{upstream.url}/v2/{name}/blobs/uploads/", params={"digest": sha256(blob)}, data=blob
            )
            if resp.status == 202:  # distribution: no monolithic POST; PUT to the session
                location = resp.headers["Location"]
                if location.startswith("/"):
                    location = upstream.url + location
                resp = await session.put(location, params={"digest": sha256(blob)}, data=blob)
            assert resp.status == 201, await resp.text()
        manifest = image_manifest((sha256(blobs[0]), len(blobs[0])), [(sha256(b), len(b)) for b in blobs[1:]])
        resp = await session.put(
            f"{upstream.url}/v2/{name}/manifests/{tag}", data=manifest, headers={"Content-Type": OCI_MANIFEST}
        )
        assert resp.status == 201, await resp.text()
        return resp.headers["Docker-Content-Digest"], manifest


def random_image(layer_size: int = 300_000, layers: int = 2) -> list[bytes]:
    return [os.urandom(500)] + [os.urandom(layer_size) for _ in range(layers)]


def basic_header(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}
