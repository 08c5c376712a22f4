"""Garbage collection over a large registry: time, peak memory, and how long writers wait.

    python -m benchmarks.gc_bench [--blobs 100000] [--manifests 10000] [--record]

Builds a registry directly (SQL and small files, no HTTP): ``--manifests`` image manifests
in 100 repositories, each made of its own bytes, a unique config, one of 100 shared base
layers and two unique layers, a quarter of them untagged; the blobs of a quarter as many
more, already deleted; loose uploaded blobs (linked to a repository, in no manifest) up to
``--blobs`` blobs in all.
Everything was last seen a day ago, so with the default grace period (2 h) whatever
nothing references is collectable. Then, each in a fresh process (so that its peak RSS is
its own), one after the other on the same directory:

1. a dry run; 2. a collection; 3. a collection with ``delete_untagged``; 4. a collection
with nothing left to do (the steady-state cost of a mark over the whole registry).

While each runs, a probe in the same process commits a one-row write transaction every
5 ms, as an upload commit would, and records how long each waited: the collection holds
SQLite's write lock one batch at a time, so pushes keep flowing. ``--record`` writes the
table into the "Garbage collection" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import resource
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python benchmarks/gc_bench.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from regd.config import load_config
from regd.gc import Parameters
from regd.gc.service import GCService
from regd.metadata.db import Database
from regd.storage.blobstore import BlobStore
from regd.storage.layout import Layout
from regd.uploads.session import UploadService

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
SECTION = "## Garbage collection"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
CONFIG = "application/vnd.oci.image.config.v1+json"
REPOSITORIES = 100
BASE_LAYERS = 100
PROBE_INTERVAL = 0.005


def _blob(layout: Layout, data: bytes) -> tuple[str, int]:
    hex_ = hashlib.sha256(data).hexdigest()
    path = layout.blobs / "sha256" / hex_[:2] / hex_
    path.write_bytes(data)
    return f"sha256:{hex_}", len(data)


def build(data_dir: Path, total_blobs: int, manifests: int) -> dict[str, int]:
    """The registry described in the module docstring; returns what it holds."""
    layout = Layout(data_dir)
    for d in layout.directories():
        d.mkdir(parents=True, exist_ok=True)
    for i in range(256):
        (layout.blobs / "sha256" / f"{i:02x}").mkdir(parents=True, exist_ok=True)

    async def migrate() -> None:
        db = Database(layout.database)
        await db.open()
        await db.close()

    asyncio.run(migrate())
    seen = time.time() - 86400
    blobs: list[tuple[str, int, float, float]] = []
    links: list[tuple[int, str]] = []
    rows: list[tuple[int, int, str, int, float]] = []
    edges: list[tuple[int, str, str, int]] = []
    tags: list[tuple[int, str, int, float]] = []

    def add(data: bytes, repo: int) -> tuple[str, int]:
        digest, size = _blob(layout, data)
        blobs.append((digest, size, seen, seen))
        links.append((repo, digest))
        return digest, size

    bases = [add(f"base layer {i}".encode() * 8, 1) for i in range(BASE_LAYERS)]
    deleted = untagged = 0
    for i in range(manifests * 5 // 4):
        repo = 1 + i % REPOSITORIES
        links.extend((repo, d) for d, _ in [bases[i % BASE_LAYERS]])
        parts = [add(os.urandom(48), repo) for _ in range(3)]  # config, two layers
        layers = [bases[i % BASE_LAYERS], *parts[1:]]
        body = {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": CONFIG, "digest": parts[0][0], "size": parts[0][1]},
            "layers": [{"mediaType": LAYER, "digest": d, "size": s} for d, s in layers],
        }
        digest, size = add(json.dumps(body).encode(), repo)
        if i % 5 == 0:  # deleted: its blobs stay until a collection
            deleted += 1
            continue
        manifest_id = len(rows) + 1
        rows.append((manifest_id, repo, digest, size, seen))
        edges += [(manifest_id, d, CONFIG if d == parts[0][0] else LAYER, s) for d, s in [parts[0], *layers]]
        if i % 5 == 1:  # a quarter of the live ones
            untagged += 1
        else:
            tags.append((repo, f"v{i}", manifest_id, seen))
    while len(blobs) < total_blobs:  # loose uploads: linked, in no manifest
        add(os.urandom(64), 1 + len(blobs) % REPOSITORIES)

    with sqlite3.connect(layout.database) as conn:
        conn.executemany(
            "INSERT INTO repositories (id, name, project, created_at, updated_at) "
            "VALUES (?, ?, 'bench', ?, ?)",
            [(r, f"bench/repo{r}", seen, seen) for r in range(1, REPOSITORIES + 1)],
        )
        conn.executemany("INSERT OR IGNORE INTO blobs VALUES (?, ?, ?, ?)", blobs)
        conn.executemany("INSERT OR IGNORE INTO repository_blobs VALUES (?, ?)", links)
        conn.executemany(
            "INSERT INTO manifests (id, repository_id, digest, media_type, size, pushed_at) "
            f"VALUES (?, ?, ?, '{OCI_MANIFEST}', ?, ?)",
            rows,
        )
        conn.executemany("INSERT OR IGNORE INTO manifest_blobs VALUES (?, ?, ?, ?, 0)", edges)
        conn.executemany("INSERT INTO tags VALUES (?, ?, ?, ?)", tags)
    return {
        "blobs": len(blobs),
        "manifests": len(rows),
        "deleted_manifests": deleted,
        "untagged_manifests": untagged,
        "bytes": sum(b[1] for b in blobs),
    }


async def _collect(data_dir: Path, parameters: Parameters) -> dict[str, Any]:
    config = load_config(None, environ={}, overrides={"storage": {"data_dir": str(data_dir), "fsync": False}})
    layout = Layout(data_dir)
    db = Database(layout.database)
    store = BlobStore(layout, fsync=False)
    await db.open()
    service = GCService(config, db, store, UploadService(db, store, layout))
    waits: list[float] = []
    done = asyncio.Event()

    async def probe() -> None:  # a one-row write transaction, as an upload commit makes
        while not done.is_set():
            started = time.perf_counter()
            async with db.transaction() as conn:
                await conn.execute("UPDATE repositories SET updated_at = ? WHERE id = 1", (time.time(),))
            waits.append(time.perf_counter() - started)
            await asyncio.sleep(PROBE_INTERVAL)

    load = os.getloadavg()[0]
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    prober = asyncio.create_task(probe())
    started = time.perf_counter()
    _, report = await service.run(parameters)
    elapsed = time.perf_counter() - started
    done.set()
    await prober
    await db.close()
    waits.sort()
    return {
        "seconds": elapsed,
        "load": load,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_growth_mib": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024,
        "manifests_purged": report.manifests_purged,
        "blobs_purged": report.blobs_purged + report.orphans_purged,
        "bytes_freed": report.bytes_freed,
        "probe_commits": len(waits),
        "probe_p50_ms": statistics.median(waits) * 1000 if waits else 0.0,
        "probe_p99_ms": waits[int(len(waits) * 0.99)] * 1000 if waits else 0.0,
        "probe_max_ms": waits[-1] * 1000 if waits else 0.0,
    }


def run_child(data_dir: Path, parameters: Parameters) -> dict[str, Any]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.gc_bench",
            "--child",
            str(data_dir),
            json.dumps(parameters.as_dict()),
        ],
        check=True,
        capture_output=True,
        text=True,
        cwd=HERE.parent,
    )
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


SCENARIOS = [
    ("dry run", Parameters(dry_run=True)),
    ("collection", Parameters()),
    ("collection, delete_untagged", Parameters(delete_untagged=True)),
    ("collection, nothing to free", Parameters()),
]


def table(held: dict[str, int], build_seconds: float, results: list[tuple[str, dict[str, Any]]]) -> str:
    lines = [
        SECTION,
        "",
        f"Produced by `python -m benchmarks.gc_bench` on {time.strftime('%Y-%m-%d')} "
        f"({platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}). A registry of {held['blobs']:,} blobs and "
        f"{held['manifests']:,} manifests in {REPOSITORIES} repositories ({held['deleted_manifests']:,} "
        f"more manifests deleted, {held['untagged_manifests']:,} untagged), built in "
        f"{build_seconds:.0f} s; each collection in a fresh process, one after the other. "
        "The probe commits a one-row write transaction every 5 ms during the collection "
        "(what an upload or manifest commit waits for the write lock). Peak RSS is the whole "
        "process's (Python and regd imported, the database open); RSS growth is what the "
        "collection added to it: memory is bounded by the batch size, not by the registry. "
        f"The last column is the machine's 1-minute load average ({os.cpu_count()} CPUs) "
        "when the run started: a shared machine inflates times and waits.",
        "",
        "| run | time (s) | peak RSS (MiB) | RSS growth (MiB) | manifests purged | blobs purged "
        "| freed (MiB) | probe commits | probe p50 / p99 / max wait (ms) | load avg at start |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for name, r in results:
        lines.append(
            f"| {name} | {r['seconds']:.2f} | {r['peak_rss_mib']:.0f} | {r['rss_growth_mib']:.1f} "
            f"| {r['manifests_purged']:,} "
            f"| {r['blobs_purged']:,} | {r['bytes_freed'] / 2**20:.1f} | {r['probe_commits']:,} "
            f"| {r['probe_p50_ms']:.1f} / {r['probe_p99_ms']:.1f} / {r['probe_max_ms']:.1f} "
            f"| {r['load']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def record(section: str) -> None:
    """Replace (or append) only this section of RESULTS.md (its heading is its first line)."""
    heading = section.splitlines()[0]
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    start = text.find(heading)
    if start < 0:
        text = text.rstrip("\n") + "\n\n" + section
    else:
        end = text.find("\n## ", start + len(heading))
        text = text[:start] + section + ("" if end < 0 else "\n" + text[end + 1 :])
    RESULTS.write_text(text)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blobs", type=int, default=100_000)
    p.add_argument("--manifests", type=int, default=10_000)
    p.add_argument("--record", action="store_true", help="write the table into benchmarks/RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep the data directory")
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        parameters = Parameters(**json.loads(a.child[1]))
        print(json.dumps(asyncio.run(_collect(Path(a.child[0]), parameters))))
        return
    work = Path(tempfile.mkdtemp(prefix="regd-gc-bench-"))
    try:
        started = time.perf_counter()
        held = build(work / "data", a.blobs, a.manifests)
        build_seconds = time.perf_counter() - started
        print(f"built {held} in {build_seconds:.1f}s", flush=True)
        results = []
        for name, parameters in SCENARIOS:
            results.append((name, run_child(work / "data", parameters)))
            print(f"{name}: {results[-1]}", flush=True)
        section = table(held, build_seconds, results)
        print("\n" + section)
        if a.record:
            record(section)
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
