"""How long the web interface takes to render its pages at size.

    python -m benchmarks.web_pages [--repositories 1000] [--tags 3000] [--rounds 30] [--record]

Builds, through the registry API of an in-process regd (access control off, default
configuration otherwise), a project ``big`` of ``--repositories`` repositories of one small
image each, a repository ``big/tags`` of ``--tags`` tags, each on its own manifest, and
``big/same`` with as many tags on one manifest.
Then GETs each page ``--rounds`` times (after one warm-up) and reports the median and
90th percentile time per page, the page's size, and how many blob or manifest reads a
render made (``BlobStore.read`` and ``read_small`` calls): a page is rendered from SQLite
(an image's platform was recorded at push), so the answer is 0 however many tags there
are. No timing is asserted anywhere; ``--record``
writes the table into the "Web pages" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/web_pages.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import orjson
from aiohttp.test_utils import TestClient, TestServer

from benchmarks.gc_bench import record
from regd.app import create_app
from regd.config import load_config
from regd.services import SERVICES

SECTION = "## Web pages"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONCURRENCY = 16


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _manifest(config: bytes, layer: bytes, note: str) -> bytes:
    return orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": _digest(layer),
                    "size": len(layer),
                }
            ],
            "annotations": {"note": note},
        }
    )


async def _in_batches(jobs: list[Callable[[], Awaitable[None]]]) -> None:
    for start in range(0, len(jobs), CONCURRENCY):
        await asyncio.gather(*(job() for job in jobs[start : start + CONCURRENCY]))


async def _push(
    client: Any, repository: str, tags: list[str], blobs: tuple[bytes, bytes], one_manifest: bool = False
) -> None:
    """``tags`` in ``repository``, each on its own manifest, or all on one."""
    for blob in blobs:
        resp = await client.post(
            f"/v2/{repository}/blobs/uploads/", params={"digest": _digest(blob)}, data=blob
        )
        assert resp.status == 201, await resp.text()

    async def put(tag: str) -> None:
        resp = await client.put(
            f"/v2/{repository}/manifests/{tag}",
            data=_manifest(*blobs, note="one" if one_manifest else tag),
            headers={"Content-Type": OCI_MANIFEST},
        )
        assert resp.status == 201, await resp.text()

    await _in_batches([lambda t=tag: put(t) for tag in tags])


async def build(client: Any, repositories: int, tags: int) -> float:
    started = time.monotonic()
    resp = await client.post(
        "/api/v2.0/projects", json={"project_name": "big", "metadata": {"public": "true"}}
    )
    assert resp.status == 201, await resp.text()
    config = orjson.dumps(
        {"os": "linux", "architecture": "amd64", "rootfs": {"type": "layers", "diff_ids": []}}
    )
    layer = os.urandom(4096)
    jobs = [
        (lambda i=i: _push(client, f"big/repo{i:05d}", ["latest"], (config, layer)))
        for i in range(repositories)
    ]
    await _in_batches(jobs)
    await _push(client, "big/tags", [f"t{i:05d}" for i in range(tags)], (config, layer))
    await _push(client, "big/same", [f"t{i:05d}" for i in range(tags)], (config, layer), one_manifest=True)
    return time.monotonic() - started


def pages(repositories: int, tags: int) -> list[tuple[str, str]]:
    last_repos = max(1, -(-repositories // 15))
    last_tags = max(1, -(-tags // 15))
    return [
        ("projects", "/"),
        ("project: repositories, page 1", "/projects/big"),
        (f"project: repositories, page {last_repos} (last)", f"/projects/big?page={last_repos}"),
        ("project: repository search", "/projects/big?q=repo0099"),
        ("repository: artifacts, page 1", "/projects/big/repositories/tags"),
        (
            f"repository: artifacts, page {last_tags} (last)",
            f"/projects/big/repositories/tags?page={last_tags}",
        ),
        ("repository: Info", "/projects/big/repositories/tags?tab=info"),
        ("repository: one artifact with every tag", "/projects/big/repositories/same"),
        ("Garbage Collection", "/admin/gc"),
    ]


async def measure(
    repositories: int, tags: int, rounds: int, data_dir: Path
) -> tuple[float, list[dict[str, Any]]]:
    config = load_config(
        None, environ={}, overrides={"storage": {"data_dir": str(data_dir)}, "auth": {"enabled": False}}
    )
    app = create_app(config)
    async with TestClient(TestServer(app)) as client:
        build_seconds = await build(client, repositories, tags)
        store = app[SERVICES].store
        reads = 0

        def counting(read: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
            async def counted(*args: Any) -> Any:
                nonlocal reads
                reads += 1
                return await read(*args)

            return counted

        store.read = counting(store.read)  # type: ignore[method-assign]  # for this run only
        store.read_small = counting(store.read_small)  # type: ignore[method-assign]
        results = []
        for name, path in pages(repositories, tags):
            resp = await client.get(path)  # warm-up: platforms learned once
            body = await resp.read()
            assert resp.status == 200, body[:500]
            reads = 0
            times = []
            for _ in range(rounds):
                started = time.perf_counter()
                resp = await client.get(path)
                await resp.read()
                times.append((time.perf_counter() - started) * 1000)
            times.sort()
            results.append(
                {
                    "page": name,
                    "path": path,
                    "median_ms": statistics.median(times),
                    "p90_ms": times[min(len(times) - 1, int(len(times) * 0.9))],
                    "bytes": len(body),
                    "reads_per_render": reads / rounds,
                }
            )
    return build_seconds, results


def table(
    repositories: int, tags: int, rounds: int, build_seconds: float, results: list[dict[str, Any]]
) -> str:
    lines = [
        SECTION,
        "",
        f"Produced by `python -m benchmarks.web_pages --repositories {repositories} --tags {tags} "
        f"--rounds {rounds}` on {time.strftime('%Y-%m-%d')} ({platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, load average "
        f"{os.getloadavg()[0]:.1f} at the end). One in-process regd (default configuration, "
        f"access control off), {repositories:,} repositories in project `big` and {tags:,} tags "
        f"(one manifest each) in `big/tags` and as many on one manifest in `big/same`, pushed "
        f"through `/v2` in {build_seconds:.0f} s. Each page is fetched once to warm up, then "
        "timed over loopback HTTP; reads per render counts blob "
        "and manifest reads from disk (`BlobStore.read`, `read_small`) during the timed renders.",
        "",
        "| page | median (ms) | p90 (ms) | size (KiB) | reads per render |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['page']} | {r['median_ms']:.1f} | {r['p90_ms']:.1f} | {r['bytes'] / 1024:.1f} "
            f"| {r['reads_per_render']:g} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--repositories", type=int, default=1000)
    parser.add_argument("--tags", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--record", action="store_true", help="write the table into benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="regd-web-bench-") as directory:
        build_seconds, results = asyncio.run(
            measure(args.repositories, args.tags, args.rounds, Path(directory))
        )
    section = table(args.repositories, args.tags, args.rounds, build_seconds, results)
    print(section)
    if args.record:
        record(section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
