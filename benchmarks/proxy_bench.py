"""Proxy-cache pulls: regd in front of an upstream, against pulling from the upstream itself.

    python -m benchmarks.proxy_bench [--upstream distribution|regd] [--layers 4]
        [--layer-mib 64] [--rounds 3] [--record]

One upstream (CNCF distribution 2.8.2 by default, auth off) and one regd (the code of this
checkout, access log off, everything else at its defaults: fsync on, one process) with a
proxy-cache project ``mirror`` of the upstream. Each round pushes a fresh image of
``--layers`` random layers of ``--layer-mib`` MiB to the upstream, and the same image to
regd's normal project ``library``, syncs, then pulls, as docker does (the manifest by tag,
then the layers three at a time, ``max-concurrent-downloads``), each pull's bytes read and
dropped by this process (1 MiB reads); odd rounds pull cold through regd before direct:

- **direct**: from the upstream itself;
- **cold**: through ``mirror`` the first time: regd downloads from the upstream, writes
  and hashes into its store and streams to the client in the same pass;
- **warm**: through ``mirror`` again (served by sendfile from the cache);
- **normal**: from regd's ``library`` project (a pushed image, no proxy).

The medians over rounds are printed, with the ratios cold/direct (the issue asks for at
least 0.9) and warm/normal (1.0: a cached pull is an ordinary pull). ``--record`` writes
the table to ``benchmarks/RESULTS-proxy.md``. No test asserts a timing; a smoke test runs
it with tiny sizes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp

from benchmarks import registries

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS-proxy.md"
ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)
CONCURRENT_DOWNLOADS = 3  # dockerd's max-concurrent-downloads default
KINDS = ("direct", "cold", "warm", "normal")


def _sha256(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


async def push(session: aiohttp.ClientSession, url: str, name: str, blobs: list[bytes]) -> None:
    """blobs[0] the config, the rest layers; POST then PUT (distribution takes no
    monolithic POST), then the manifest as ``v1``."""
    for blob in blobs:
        resp = await session.post(f"{url}/v2/{name}/blobs/uploads/")
        location = resp.headers["Location"]
        location = location if location.startswith("http") else url + location
        sep = "&" if "?" in location else "?"
        resp = await session.put(f"{location}{sep}digest={_sha256(blob)}", data=blob)
        assert resp.status == 201, await resp.text()
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": _sha256(blobs[0]),
            "size": len(blobs[0]),
        },
        "layers": [
            {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": _sha256(b), "size": len(b)}
            for b in blobs[1:]
        ],
    }
    resp = await session.put(
        f"{url}/v2/{name}/manifests/v1",
        data=json.dumps(manifest).encode(),
        headers={"Content-Type": manifest["mediaType"]},
    )
    assert resp.status == 201, await resp.text()


async def pull(session: aiohttp.ClientSession, url: str, name: str) -> tuple[int, float]:
    """(bytes, seconds) of a docker-like pull of ``name:v1``."""
    started = time.perf_counter()
    resp = await session.get(f"{url}/v2/{name}/manifests/v1", headers={"Accept": ACCEPT})
    assert resp.status == 200, await resp.text()
    manifest = await resp.json(content_type=None)
    digests = [manifest["config"]["digest"]] + [layer["digest"] for layer in manifest["layers"]]
    gate = asyncio.Semaphore(CONCURRENT_DOWNLOADS)

    async def blob(digest: str) -> int:
        async with gate:
            got = await session.get(f"{url}/v2/{name}/blobs/{digest}")
            assert got.status == 200, await got.text()
            total = 0
            while chunk := await got.content.readany():
                total += len(chunk)
            assert total == got.content_length, f"{digest}: {total} of {got.content_length} bytes"
            return total

    total = sum(await asyncio.gather(*[blob(d) for d in digests]))
    return total, time.perf_counter() - started


def _api(url: str, method: str, path: str, body: Any) -> str:
    request = urllib.request.Request(
        f"{url}/api/v2.0{path}", data=json.dumps(body).encode(), method=method,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=30) as response:
        return str(response.headers.get("Location", ""))


async def measure(
    upstream: str, regd: str, layers: int, layer_mib: int, rounds: int
) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {kind: [] for kind in KINDS}
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout, read_bufsize=1 << 20) as session:
        for round_ in range(rounds):
            name = f"library/bench-{round_}-{os.urandom(3).hex()}"
            blobs = [os.urandom(1000)] + [os.urandom(layer_mib << 20) for _ in range(layers)]
            await push(session, upstream, name, blobs)
            await push(session, regd, name, blobs)
            del blobs
            os.sync()  # the pushes' dirty pages are not the pulls' to write back
            plan = {
                "direct": (upstream, name),
                "cold": (regd, f"mirror/{name}"),
                "warm": (regd, f"mirror/{name}"),
                "normal": (regd, name),
            }
            # Every other round pulls through regd first: neither side always goes first.
            order = KINDS if round_ % 2 == 0 else ("cold", "direct", "warm", "normal")
            for kind, (url, repository) in ((k, plan[k]) for k in order):
                size, seconds = await pull(session, url, repository)
                results[kind].append(size / seconds / 2**20)
                print(f"round {round_ + 1}: {kind:6} {size / 2**20:8.1f} MiB in {seconds:6.2f} s "
                      f"= {results[kind][-1]:7.1f} MiB/s", flush=True)  # fmt: skip
    return results


def table(results: dict[str, list[float]], meta: dict[str, Any]) -> str:
    medians = {kind: statistics.median(values) for kind, values in results.items()}
    lines = [
        "# Proxy-cache pull benchmark",
        "",
        f"`python -m benchmarks.proxy_bench {meta['args']}`, {meta['when']}, upstream {meta['upstream']}, "
        f"{meta['layers']} layers of {meta['layer_mib']} MiB, {meta['rounds']} rounds (medians).",
        "",
        "| pull | MiB/s (median) | rounds |",
        "| --- | ---: | --- |",
    ]
    for kind in KINDS:
        lines.append(f"| {kind} | {medians[kind]:.1f} | {', '.join(f'{v:.0f}' for v in results[kind])} |")
    lines += [
        "",
        f"- cold through regd / direct from the upstream: **{medians['cold'] / medians['direct']:.2f}x**",
        f"- warm through regd / regd's normal project: **{medians['warm'] / medians['normal']:.2f}x**",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--upstream", choices=("distribution", "regd"), default="distribution")
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--layer-mib", type=int, default=64)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--record", action="store_true", help=f"write the table to {RESULTS.name}")
    p.add_argument("--markdown", type=Path, help="write the table here instead")
    a = p.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="regd-proxy-bench-"))
    settings = registries.Settings(
        workdir=work, data_root=work, logdir=work, regbench=work / "unused", regd_source=ROOT,
        regd_commit="worktree",
    )  # fmt: skip
    with registries.start(a.upstream, settings) as upstream, registries.start("regd", settings) as regd:
        location = _api(
            regd.url, "POST", "/registries", {"name": "up", "type": "docker-registry", "url": upstream.url}
        )
        registry_id = int(location.rsplit("/", 1)[1])
        _api(regd.url, "POST", "/projects", {"project_name": "mirror", "registry_id": registry_id})
        results = asyncio.run(measure(upstream.url, regd.url, a.layers, a.layer_mib, a.rounds))
    meta = {
        "args": " ".join(argv if argv is not None else __import__("sys").argv[1:]),
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "upstream": "CNCF distribution 2.8.2" if a.upstream == "distribution" else "regd",
        "layers": a.layers,
        "layer_mib": a.layer_mib,
        "rounds": a.rounds,
    }
    text = table(results, meta)
    print(text)
    if a.markdown or a.record:
        (a.markdown or RESULTS).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
