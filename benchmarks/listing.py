"""Lists at size: `python -m benchmarks.listing`.

Fills each registry (distribution, then regd as committed at each `--regd` revision;
fresh data directories) with a repository of `--tags` tags, `--repos` repositories and,
for regd, a repository of `--artifacts` distinct manifests; then times, one request at
a time, from a keep-alive connection:

- `tags paged`: `GET /v2/<name>/tags/list?n=100`, following `Link` through every tag;
- `tags whole`: `GET /v2/<name>/tags/list` (every tag in one answer);
- `catalog paged`: `GET /v2/_catalog?n=100`, following `Link` through every repository;
- `artifacts`: Harbor's `GET /api/v2.0/projects/library/repositories/<name>/artifacts
  ?page=P&page_size=100&with_tag=true` for every page (regd only; distribution has no such API).

Printed: p50/p99/max latency per list and registry, medians over `--rounds` rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import registries

TAGS_REPO = "library/many-tags"
ART_REPO = "library/many-artifacts"
CONFIG = b'{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}'
CONFIG_DIGEST = "sha256:" + hashlib.sha256(CONFIG).hexdigest()
MANIFEST_TYPE = "application/vnd.oci.image.manifest.v1+json"


def manifest(note: str = "") -> bytes:
    body: dict[str, object] = {
        "schemaVersion": 2, "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG_DIGEST,
                   "size": len(CONFIG)},
        "layers": [],
    }
    if note:
        body["annotations"] = {"n": note}
    return json.dumps(body).encode()


async def _bounded(jobs: list[Callable[[], object]], concurrency: int) -> None:
    queue = list(reversed(jobs))

    async def worker() -> None:
        while queue:
            await queue.pop()()  # type: ignore[misc]

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def fill(url: str, tags: int, repos: int, artifacts: int) -> None:
    headers = {"Content-Type": MANIFEST_TYPE}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=16)) as http_:
        async def ok(resp: aiohttp.ClientResponse, *codes: int) -> None:
            if resp.status not in codes:
                raise RuntimeError(f"{resp.method} {resp.url}: {resp.status} {await resp.text()}")

        async def blob(repo: str) -> None:
            resp = await http_.post(f"{url}/v2/{repo}/blobs/uploads/", params={"digest": CONFIG_DIGEST},
                                    data=CONFIG)
            if resp.status == 202:  # no single-POST push (distribution): session + PUT
                loc = resp.headers["Location"]
                resp = await http_.put(loc if loc.startswith("http") else url + loc,
                                       params={"digest": CONFIG_DIGEST}, data=CONFIG)
            await ok(resp, 201)

        async def put(repo: str, ref: str, body: bytes) -> None:
            await ok(await http_.put(f"{url}/v2/{repo}/manifests/{ref}", data=body, headers=headers), 201)

        async def mount_and_put(repo: str) -> None:
            resp = await http_.post(f"{url}/v2/{repo}/blobs/uploads/",
                                    params={"mount": CONFIG_DIGEST, "from": TAGS_REPO})
            await ok(resp, 201)
            await put(repo, "v1", manifest())

        if artifacts:  # regd: Harbor's project (made at first start only with auth on)
            resp = await http_.post(f"{url}/api/v2.0/projects",
                                    json={"project_name": "library", "metadata": {"public": "true"}})
            await ok(resp, 201, 409)
        await blob(TAGS_REPO)
        plain = manifest()
        jobs: list[Callable[[], object]] = [
            (lambda i=i: put(TAGS_REPO, f"t{i:05d}", plain)) for i in range(tags)  # type: ignore[misc]
        ]
        jobs += [(lambda i=i: mount_and_put(f"library/repo-{i:05d}")) for i in range(repos)]  # type: ignore[misc]
        if artifacts:
            await blob(ART_REPO)
            for i in range(artifacts):  # half tagged, half by digest only
                body = manifest(str(i))
                ref = f"a{i:04d}" if i % 2 else "sha256:" + hashlib.sha256(body).hexdigest()
                jobs.append(lambda ref=ref, body=body: put(ART_REPO, ref, body))  # type: ignore[misc]
        await _bounded(jobs, 16)


def _timed(conn: http.client.HTTPConnection, path: str) -> tuple[float, str | None]:
    t0 = time.perf_counter()
    conn.request("GET", path)
    resp = conn.getresponse()
    body = resp.read()
    ms = (time.perf_counter() - t0) * 1000
    if resp.status != 200:
        raise RuntimeError(f"GET {path}: {resp.status} {body[:200]!r}")
    link = resp.getheader("Link")
    return ms, (link.split(">")[0].lstrip("<") if link else None)


def _walk(conn: http.client.HTTPConnection, first: str) -> list[float]:
    times, path = [], first
    while path:
        ms, path_next = _timed(conn, path)
        times.append(ms)
        if path_next and "://" in path_next:  # an absolute URL: its path
            path_next = "/" + path_next.split("://", 1)[1].split("/", 1)[1]
        path = path_next
    return times


def measure(addr: str, harbor: bool, artifacts: int) -> dict[str, list[float]]:
    conn = http.client.HTTPConnection(addr, timeout=60)
    out: dict[str, list[float]] = {}
    for _ in range(2):
        out.setdefault("tags paged (n=100)", []).extend(_walk(conn, f"/v2/{TAGS_REPO}/tags/list?n=100"))
        out.setdefault("catalog paged (n=100)", []).extend(_walk(conn, "/v2/_catalog?n=100"))
    out["tags whole"] = [_timed(conn, f"/v2/{TAGS_REPO}/tags/list")[0] for _ in range(20)]
    if harbor and artifacts:
        path = "/api/v2.0/projects/library/repositories/many-artifacts/artifacts"
        pages = (artifacts + 99) // 100
        out["artifacts (page_size=100)"] = [
            _timed(conn, f"{path}?page={p}&page_size=100&with_tag=true")[0]
            for _ in range(2) for p in range(1, pages + 1)
        ]
    conn.close()
    return out


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.listing", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--tags", type=int, default=10_000)
    p.add_argument("--repos", type=int, default=10_000)
    p.add_argument("--artifacts", type=int, default=3_000)
    p.add_argument("--regd", action="append", default=[], metavar="REV")
    p.add_argument("--regd-workers", type=int, default=None)
    p.add_argument("--no-distribution", action="store_true")
    p.add_argument("--nice", type=int, default=0,
                   help="niceness of this script, so of the registries and clients it starts (-5: root)")
    p.add_argument("--out", type=Path)
    a = p.parse_args(argv)
    if a.nice:
        os.nice(a.nice)  # the registries and clients it starts inherit it
    work = Path(tempfile.mkdtemp(prefix="regd-listing-"))
    try:
        variants = registries.variants(work, a.regd, a.regd_workers, not a.no_distribution)
        results: dict[str, dict[str, list[dict[str, float]]]] = {}
        for r in range(a.rounds):
            for label, settings in variants:
                harbor = label != "distribution"
                with registries.start("distribution" if not harbor else "regd", settings) as reg:
                    t0 = time.monotonic()
                    asyncio.run(fill(reg.url, a.tags, a.repos, a.artifacts if harbor else 0))
                    filled = time.monotonic() - t0
                    for name, times in measure(reg.addr, harbor, a.artifacts).items():
                        m = {"p50": _pct(times, 0.5), "p99": _pct(times, 0.99), "max": max(times),
                             "requests": len(times)}
                        results.setdefault(label, {}).setdefault(name, []).append(m)
                        print(f"round {r + 1} {label:36} {name:26} p50 {m['p50']:7.2f} ms"
                              f" p99 {m['p99']:7.2f} ms max {m['max']:7.1f} ms ({len(times)} requests;"
                              f" filled in {filled:.0f} s)", flush=True)
        print("\n| registry | list | p50 ms | p99 ms | max ms |\n|---|---|---|---|---|")
        for label, lists in results.items():
            for name, ms in lists.items():
                med = {k: statistics.median(m[k] for m in ms) for k in ("p50", "p99", "max")}
                print(f"| {label} | {name} | {med['p50']:.2f} | {med['p99']:.2f} | {med['max']:.1f} |")
        if a.out:
            args = {k: str(v) for k, v in vars(a).items()}
            a.out.write_text(json.dumps({"args": args, "results": results}))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
