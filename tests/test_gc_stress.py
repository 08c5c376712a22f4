"""Online collection under load: concurrent docker-style pushers over HTTP against the real
app while collections run back to back (in the daemon, and as ``regd gc`` processes on the
same data directory). Zero lost blobs; with a grace period longer than a push, zero
refused pushes; after a final collection, no file that nothing references.

Bounded in time: ``REGD_TEST_GC_STRESS_SECONDS`` per mode (default 20)."""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import ClientSession
from aiohttp.test_utils import TestServer

from regd.api.harbor.gc import GC
from regd.app import create_app
from regd.gc import GCBusyError, Parameters

from .gc_support import (
    MAX_ATTEMPTS,
    DockerStyleClient,
    Image,
    PushAbandonedError,
    check_consistent,
    gc_config,
    image,
    run_regd_gc,
)

SECONDS = float(os.environ.get("REGD_TEST_GC_STRESS_SECONDS", "20"))
PUSHERS = 4
REPOSITORIES = ["stress/a", "stress/b", "stress/c"]
SHARED_LAYERS = [os.urandom(random.randint(2000, 20000)) for _ in range(16)]


@dataclass
class Tally:
    pushes: int = 0
    refused: int = 0
    abandoned: int = 0
    deletes: int = 0
    repushes: int = 0
    pulls: int = 0
    collections: int = 0
    cli_collections: int = 0
    swept_blobs: int = 0


@dataclass
class Pusher:
    """One client: its images (repo, tag) -> Image are what must always pull intact."""

    number: int
    client: DockerStyleClient
    tally: Tally
    rng: random.Random
    expected: dict[tuple[str, str], Image] = field(default_factory=dict)
    deleted: list[Image] = field(default_factory=list)
    counter: int = 0

    def new_image(self) -> Image:
        self.counter += 1
        config = f"pusher {self.number} image {self.counter} {os.urandom(8).hex()}".encode()
        layers = self.rng.sample(SHARED_LAYERS, self.rng.randint(1, 4))
        if self.rng.random() < 0.5:
            layers.append(os.urandom(self.rng.randint(100, 5000)))
        return image([config, *layers])

    async def push(self, img: Image) -> None:
        repo = self.rng.choice(REPOSITORIES)
        source = self.rng.choice([r for r in REPOSITORIES if r != repo])
        tag = f"p{self.number}-{self.counter}-{self.rng.randint(0, 1 << 30)}"
        try:
            self.tally.refused += await self.client.push(repo, tag, img, mount_from=source)
        except PushAbandonedError:
            self.tally.refused += MAX_ATTEMPTS
            self.tally.abandoned += 1  # never accepted, so nothing to pull
            return
        self.tally.pushes += 1
        self.expected[(repo, tag)] = img

    async def step(self) -> None:
        roll = self.rng.random()
        if roll < 0.45 or not self.expected:
            await self.push(self.new_image())
        elif roll < 0.60:
            key = self.rng.choice(list(self.expected))
            assert await self.client.delete(key[0], key[1]) == 202
            self.deleted.append(self.expected.pop(key))
            self.tally.deletes += 1
        elif roll < 0.70:
            key = self.rng.choice(list(self.expected))
            img = self.expected[key]
            assert await self.client.delete(key[0], img.digest) == 202
            for other in [k for k, v in self.expected.items() if k[0] == key[0] and v.digest == img.digest]:
                del self.expected[other]
            self.deleted.append(img)
            self.tally.deletes += 1
        elif roll < 0.85 and self.deleted:
            await self.push(self.deleted.pop())  # just-deleted content, pushed again
            self.tally.repushes += 1
        else:
            (repo, tag), img = self.rng.choice(list(self.expected.items()))
            await self.client.pull(repo, tag, img)
            self.tally.pulls += 1


async def run_cli_gc(data_dir: Path, grace: float) -> None:
    code, _, err = await run_regd_gc(data_dir, grace=grace)
    assert code in (0, 1), err[-2000:]
    if code == 1:  # the daemon's collection held the lock, and nothing else went wrong
        assert "another garbage collection is running" in err, err[-2000:]


@pytest.mark.parametrize("grace", [0.0, 3600.0], ids=["grace-0", "grace-longer-than-a-push"])
async def test_pushes_and_collections_run_together_and_nothing_accepted_breaks(
    aiohttp_server: Callable[..., Awaitable[TestServer]], tmp_path: Path, grace: float
) -> None:
    data_dir = tmp_path / "data"
    app = create_app(gc_config(data_dir, grace_period=grace))
    server = await aiohttp_server(app)
    gc = app[GC]
    tally = Tally()
    deadline = time.monotonic() + SECONDS
    base = str(server.make_url("")).rstrip("/")

    async with ClientSession() as session:
        client = DockerStyleClient(session, base)
        pushers = [Pusher(n, client, tally, random.Random(f"{grace}-{n}")) for n in range(PUSHERS)]

        async def pushing(pusher: Pusher) -> None:
            while time.monotonic() < deadline:
                await pusher.step()

        async def collecting() -> None:
            turn = 0
            while time.monotonic() < deadline:
                turn += 1
                if turn % 4 == 0:
                    await run_cli_gc(data_dir, grace)
                    tally.cli_collections += 1
                    continue
                try:
                    _, report = await gc.run(Parameters(delete_untagged=turn % 4 == 2))
                except GCBusyError:
                    continue
                tally.collections += 1
                tally.swept_blobs += report.blobs_purged
                await asyncio.sleep(0.01)

        await asyncio.gather(collecting(), *(pushing(p) for p in pushers))

        expected = {key: img for p in pushers for key, img in p.expected.items()}
        for (repo, tag), img in expected.items():
            await client.pull(repo, tag, img)

        # No pushers now: a collection with no grace leaves only what is referenced.
        await gc.run(Parameters(), grace_period=0)
        check_consistent(data_dir, only_referenced=True)
        for (repo, tag), img in expected.items():
            await client.pull(repo, tag, img)

    print(f"\ngrace={grace:g}: {tally}, mounts={client.mounts}")
    assert tally.collections + tally.cli_collections >= 5
    assert tally.pushes >= 20 and tally.deletes >= 5 and tally.repushes >= 2 and client.mounts > 0
    if grace > 0:
        assert tally.refused == 0, "a push was refused within the grace period"
    else:
        assert tally.swept_blobs > 0
