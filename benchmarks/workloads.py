"""The workloads, in the order they run against one fresh registry, and how each is measured.

Order matters: pulls read the blobs the docker-style pushes wrote, and the small requests
read the manifest that their setup pushes. Every workload yields one `Measurement`:
throughput, latency p50/p99 of one operation (a whole blob push, one GET, one request),
errors, and the server's CPU seconds and peak RSS over exactly that workload.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import dockerflow
from benchmarks.dockerflow import Dockerd
from benchmarks.loadgen import BlobFactory, LoadResult, run_load, run_loads_together
from benchmarks.procstat import Monitor
from benchmarks.registries import Running

MiB = 1 << 20
GiB = 1 << 30
PUSH_MODES = ("docker", "chunked", "monolithic", "post")


def push_repo(mode: str) -> str:
    # Under `library`: regd (like Harbor) keeps repositories in projects, and `library`
    # is the one that exists from the start.
    return f"library/bench-push-{mode}"


SMALL_REPO = "library/bench-small"
MIXED_REPO = "library/bench-mixed"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
REPOSITORIES = [push_repo(m) for m in PUSH_MODES] + [SMALL_REPO, MIXED_REPO]


@dataclass(frozen=True)
class Plan:
    """Sizes and levels of one run; `--quick` and the smoke test shrink them."""

    blob_size: int = 16 * MiB
    min_blobs: int = 64  # per push workload; at concurrency c, max(min_blobs, c) blobs
    concurrencies: tuple[int, ...] = (1, 8, 32, 128)
    mixed_concurrencies: tuple[int, ...] = (8, 32, 128)
    small_concurrency: int = 64
    small_seconds: float = 10.0
    range_size: int = 1 * MiB
    chunk_size: int = 4 * MiB
    auth_concurrency: int = 8
    # The memory targets: many large uploads at once, and one very large blob.
    large_blob_size: int = 64 * MiB
    large_concurrency: int = 128
    huge_blob_size: int = 1024 * MiB
    only: tuple[str, ...] = ()  # workload name prefixes; empty means all

    def wants(self, name: str) -> bool:
        return not self.only or any(name.startswith(p) for p in self.only)

    def touches(self, group: str) -> bool:
        """Whether any workload of `group` ("small", "pull range"...) is wanted."""
        return not self.only or any(p.startswith(group) or group.startswith(p) for p in self.only)

    def wants_unauthenticated(self) -> bool:
        return not self.only or any(not p.startswith("auth") for p in self.only)

    def blob_count(self, concurrency: int) -> int:
        return max(self.min_blobs, concurrency)


@dataclass
class Measurement:
    workload: str
    concurrency: int
    unit: str  # "MiB/s" or "req/s"
    throughput: float
    p50_ms: float
    p99_ms: float
    errors: int
    server_cpu_seconds: float
    server_cpu_per_unit: float  # per GiB moved, or per 1,000 requests
    cpu_unit: str
    peak_rss_mib: float
    client_cpu_seconds: float
    other_cpu_seconds: float  # the machine's, less the server's and the client's (procstat.py)
    bytes: int
    requests: int
    seconds: float
    error_samples: list[str] = field(default_factory=list)
    note: str = ""
    rss_growth_mib: float = 0.0  # peak RSS minus RSS when the workload began

    @property
    def key(self) -> str:
        return measurement_key(self.workload, self.concurrency)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def measurement_key(workload: str, concurrency: int) -> str:
    return f"{workload} c={concurrency}" if concurrency else workload


class BlobSets:
    """All blob lists of a run, made once: every registry instance starts empty."""

    def __init__(self, factory: BlobFactory, plan: Plan) -> None:
        self.factory = factory
        self.lists: dict[str, Path] = {}
        for mode in PUSH_MODES:
            for c in plan.concurrencies:
                wanted = plan.wants(f"push {mode}") or needs_pull_set(plan) or plan.touches("auth")
                if wanted and (mode == "docker" or plan.wants(f"push {mode}")):
                    self.lists[f"push-{mode}-c{c}"] = factory.make(f"push-{mode}-c{c}", plan.blob_count(c))
        for c in plan.mixed_concurrencies:
            if plan.touches("mixed"):
                self.lists[f"mixed-c{c}"] = factory.make(f"mixed-c{c}", plan.blob_count(c // 2))
        self.tiny = factory.make("probe", 1)
        self.large: BlobFactory | None = None
        self.huge: BlobFactory | None = None
        if plan.touches("memory"):
            self.large = BlobFactory(factory.workdir, plan.large_blob_size)
            self.lists["large"] = self.large.make("large", plan.large_concurrency)
            self.huge = BlobFactory(factory.workdir, plan.huge_blob_size)
            self.lists["huge"] = self.huge.make("huge", 1)

    def pull_set(self, plan: Plan) -> Path:
        return self.lists[f"push-docker-c{max(plan.concurrencies)}"]


def needs_pull_set(plan: Plan) -> bool:
    return plan.touches("pull") or plan.touches("mixed")


def _timeout(nbytes: int) -> float:
    return 120.0 + nbytes / (5 * MiB)


def _measure(
    reg: Running, workload: str, concurrency: int, run: Callable[[], list[LoadResult]],
    per_request: bool, note: str = "",
) -> Measurement:
    monitor = Monitor(reg.pid)
    monitor.start()
    results = run()
    usage = monitor.stop()
    first = results[0]
    nbytes = sum(r.bytes for r in results)
    requests = sum(r.requests for r in results)
    ops = sum(r.ops for r in results)
    seconds = max(r.seconds for r in results) or 1e-9
    if per_request:
        unit, throughput = "req/s", ops / seconds
        cpu_unit, per_unit = "s/1k req", usage.cpu_seconds / max(requests, 1) * 1000
    else:
        unit, throughput = "MiB/s", nbytes / MiB / seconds
        cpu_unit, per_unit = "s/GiB", usage.cpu_seconds / max(nbytes / GiB, 1e-9)
    return Measurement(
        workload=workload, concurrency=concurrency, unit=unit, throughput=throughput,
        p50_ms=first.latency_ms.get("p50", 0.0), p99_ms=first.latency_ms.get("p99", 0.0),
        errors=sum(r.errors for r in results),
        server_cpu_seconds=usage.cpu_seconds, server_cpu_per_unit=per_unit, cpu_unit=cpu_unit,
        peak_rss_mib=usage.peak_rss_bytes / MiB,
        client_cpu_seconds=sum(r.client_cpu_seconds for r in results),
        other_cpu_seconds=max(0.0, usage.machine_busy_seconds - usage.cpu_seconds
                              - sum(r.client_cpu_seconds for r in results)),
        bytes=nbytes, requests=requests, seconds=seconds,
        error_samples=[s for r in results for s in r.error_samples][:5], note=note,
        rss_growth_mib=(usage.peak_rss_bytes - usage.start_rss_bytes) / MiB,
    )


class Session:
    """The workloads against one running registry."""

    def __init__(self, reg: Running, plan: Plan, blobs: BlobSets, regbench: list[str]) -> None:
        self.reg = reg
        self.plan = plan
        self.blobs = blobs
        self.regbench = regbench

    def _args(self, repo: str, **extra: Any) -> dict[str, Any]:
        args: dict[str, Any] = {"addr": self.reg.addr, "repo": repo, **extra}
        if self.reg.token:
            args["token"] = self.reg.token
        return args

    def _push(self, mode: str, c: int, prefix: str = "") -> Measurement:
        blobs = self.blobs.lists[f"push-{mode}-c{c}"]
        args = self._args(push_repo(mode), blobs=blobs, base=self.blobs.factory.base,
                          concurrency=c, mode=mode, chunk=self.plan.chunk_size)
        return self._run_one(f"{prefix}push {mode}", c, "push", args,
                             self.plan.blob_count(c) * self.plan.blob_size)

    def _pull(self, kind: str, c: int, prefix: str = "", blobs: Path | None = None) -> Measurement:
        count = self.plan.blob_count(c)
        args = self._args(push_repo("docker"), blobs=blobs or self.blobs.pull_set(self.plan),
                          concurrency=c, count=count,
                          range=self.plan.range_size if kind == "range" else 0)
        return self._run_one(f"{prefix}pull {kind}", c, "pull", args, count * self.plan.blob_size)

    def _small(self, name: str, method: str, path: str, headers: list[str], prefix: str = "") -> Measurement:
        c = self.plan.small_concurrency
        args = self._args(SMALL_REPO, concurrency=c, seconds=self.plan.small_seconds,
                          method=method, path=path, header=headers)
        timeout = self.plan.small_seconds + 60
        return _measure(self.reg, f"{prefix}small {name}", c,
                        lambda: [run_load(self.regbench, "requests", args, timeout)], True)

    def _mixed(self, c: int) -> Measurement:
        push_list = self.blobs.lists[f"mixed-c{c}"]
        count = self.plan.blob_count(c // 2)
        push = self._args(MIXED_REPO, blobs=push_list, base=self.blobs.factory.base,
                          concurrency=c // 2, mode="docker")
        pull = self._args(push_repo("docker"), blobs=self.blobs.pull_set(self.plan),
                          concurrency=c - c // 2, count=count, range=0)
        nbytes = 2 * count * self.plan.blob_size
        return _measure(self.reg, "mixed push+pull", c, lambda: run_loads_together(
            self.regbench, [("push", push), ("pull", pull)], _timeout(nbytes)), False,
            note="latency is the push side's")

    def run_docker(self, d: Dockerd, image_bytes: int, report: Callable[[Measurement], None]) -> None:
        """docker push, then docker pull, of the suite's image through a real dockerd."""
        pushed = self._docker_step("docker push", dockerflow.push, d, image_bytes)
        report(pushed)
        if not pushed.errors:
            report(self._docker_step("docker pull", dockerflow.pull, d, image_bytes))

    def _docker_step(self, name: str, step: Callable[[Dockerd, str], float], d: Dockerd,
                     image_bytes: int) -> Measurement:
        def once() -> list[LoadResult]:
            try:
                seconds = step(d, self.reg.addr)
            except (dockerflow.DockerError, OSError, subprocess.SubprocessError) as e:
                return [LoadResult(errors=1, seconds=1.0, error_samples=[str(e)])]
            ms = seconds * 1000
            return [LoadResult(ops=1, bytes=image_bytes, seconds=seconds, latency_ms={"p50": ms, "p99": ms})]

        return _measure(self.reg, name, 1, once, False,
                        note="one image; dockerd gzips and extracts layers, so this is mostly dockerd's time")

    def run_memory(self, report: Callable[[Measurement], None]) -> None:
        """The memory targets: RSS under `large_concurrency` uploads of `large_blob_size` at
        once, and RSS growth while one `huge_blob_size` blob is pushed and pulled."""
        p, b = self.plan, self.blobs
        assert b.large is not None and b.huge is not None
        for name, factory, blobs, c in (
            (f"memory: push {p.large_blob_size // MiB} MiB x{p.large_concurrency}", b.large,
             b.lists["large"], p.large_concurrency),
            (f"memory: push {p.huge_blob_size // MiB} MiB x1", b.huge, b.lists["huge"], 1),
        ):
            nbytes = c * factory.blob_size
            args = self._args(push_repo("docker"), blobs=blobs, base=factory.base, concurrency=c,
                              mode="docker")
            report(self._run_one(name, c, "push", args, nbytes))
        args = self._args(push_repo("docker"), blobs=b.lists["huge"], concurrency=1, count=1, range=0)
        report(self._run_one(f"memory: pull {p.huge_blob_size // MiB} MiB x1", 1, "pull", args,
                             p.huge_blob_size))

    def _run_one(self, name: str, c: int, command: str, args: dict[str, Any], nbytes: int) -> Measurement:
        return _measure(self.reg, name, c,
                        lambda: [run_load(self.regbench, command, args, _timeout(nbytes))], False)

    def supports_single_post(self) -> bool:
        """Whether a one-request POST ?digest= push is accepted (OCI spec: MAY)."""
        body = os.urandom(4096)
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        try:
            status, _, _ = http(self.reg, "POST", f"/v2/{push_repo('post')}/blobs/uploads/?digest={digest}",
                                body, {"Content-Type": "application/octet-stream"})
        except OSError:  # distribution answers 202 before reading the body, then resets
            return False
        return status == 201

    def small_requests(self) -> list[tuple[str, str, str, list[str]]]:
        digest = setup_small_repo(self.reg, self.blobs)
        accept = f"Accept: {OCI_MANIFEST}"
        base = f"/v2/{SMALL_REPO}"
        return [
            ("manifest GET tag", "GET", f"{base}/manifests/latest", [accept]),
            ("manifest GET digest", "GET", f"{base}/manifests/{digest}", [accept]),
            ("manifest HEAD tag", "HEAD", f"{base}/manifests/latest", [accept]),
            ("manifest HEAD digest", "HEAD", f"{base}/manifests/{digest}", [accept]),
            ("tags list", "GET", f"{base}/tags/list", []),
            ("/v2/", "GET", "/v2/", []),
        ]

    def run_all(self, report: Callable[[Measurement], None]) -> None:
        p = self.plan
        for mode in PUSH_MODES:
            if not (p.wants(f"push {mode}") or (mode == "docker" and needs_pull_set(p))):
                continue
            if mode == "post" and not self.supports_single_post():
                report(unsupported(f"push {mode}", "server answers 202: no single-POST push"))
                continue
            for c in p.concurrencies:
                report(self._push(mode, c))
        if needs_pull_set(p):
            verify_pull(self.reg, self.blobs.pull_set(p), push_repo("docker"))
        for kind in ("whole", "range"):
            if p.wants(f"pull {kind}"):
                for c in p.concurrencies:
                    report(self._pull(kind, c))
        if p.touches("small"):
            for name, method, path, headers in self.small_requests():
                if p.wants(f"small {name}"):
                    report(self._small(name, method, path, headers))
        if p.touches("mixed"):
            for c in p.mixed_concurrencies:
                report(self._mixed(c))
        if p.touches("memory"):
            self.run_memory(report)

    def run_auth(self, report: Callable[[Measurement], None]) -> None:
        """The auth-on subset; the same names prefixed with 'auth: '."""
        c = self.plan.auth_concurrency
        if c not in self.plan.concurrencies:
            c = self.plan.concurrencies[0]
        report(self._push("docker", c, "auth: "))
        report(self._pull("whole", c, "auth: ", self.blobs.lists[f"push-docker-c{c}"]))
        for name, method, path, headers in self.small_requests():
            if name in ("manifest GET tag", "/v2/"):
                report(self._small(name, method, path, headers, "auth: "))


def unsupported(workload: str, why: str) -> Measurement:
    return Measurement(workload, 0, "MiB/s", 0.0, 0.0, 0.0, 0, 0.0, 0.0, "s/GiB", 0.0, 0.0, 0.0,
                       0, 0, 0.0, note=f"not supported: {why}")


def http(reg: Running, method: str, path: str, body: bytes = b"",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One setup request (not timed) with the registry's token, if any."""
    data = body if method in ("POST", "PUT", "PATCH") else None
    request = urllib.request.Request(reg.url + path, data=data, method=method, headers=dict(headers or {}))
    if reg.token:
        request.add_header("Authorization", f"Bearer {reg.token}")
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


def push_small_blob(reg: Running, repo: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    status, headers, body = http(reg, "POST", f"/v2/{repo}/blobs/uploads/")
    if status != 202:
        raise SetupError(f"start upload: {status} {body[:200]!r}")
    parts = urllib.parse.urlsplit(headers["Location"])
    loc = parts.path + (f"?{parts.query}" if parts.query else "")
    sep = "&" if "?" in loc else "?"
    status, _, body = http(reg, "PUT", f"{loc}{sep}digest={digest}", data,
                           {"Content-Type": "application/octet-stream"})
    if status != 201:
        raise SetupError(f"complete upload: {status} {body[:200]!r}")
    return digest


class SetupError(RuntimeError):
    pass


def setup_small_repo(reg: Running, blobs: BlobSets, tags: int = 20) -> str:
    """Pushes a config, two layers and an OCI manifest under 'latest' and `tags` more tags."""
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    layers = [blobs.factory.content(blobs.tiny, 0)[: 4096 + i] for i in range(2)]
    config_digest = push_small_blob(reg, SMALL_REPO, config)
    layer_digests = [push_small_blob(reg, SMALL_REPO, layer) for layer in layers]
    manifest = json.dumps({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": config_digest, "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": d, "size": len(layer)} for d, layer in zip(layer_digests, layers, strict=True)],
    }).encode()
    digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
    for ref in ["latest", digest, *(f"t{i}" for i in range(tags))]:
        status, _, body = http(reg, "PUT", f"/v2/{SMALL_REPO}/manifests/{ref}", manifest,
                               {"Content-Type": OCI_MANIFEST})
        if status != 201:
            raise SetupError(f"PUT manifest {ref}: {status} {body[:200]!r}")
    status, _, body = http(reg, "GET", f"/v2/{SMALL_REPO}/manifests/latest", headers={"Accept": OCI_MANIFEST})
    if status != 200 or body != manifest:
        raise SetupError(f"GET manifest back: {status}")
    return digest


def verify_pull(reg: Running, blob_list: Path, repo: str) -> None:
    """Checks one pushed blob byte for byte (regbench only counts bytes while timed)."""
    digest = BlobFactory.digest_at(blob_list, 0)
    status, _, body = http(reg, "GET", f"/v2/{repo}/blobs/{digest}")
    if reg.name != "null" and (status != 200 or "sha256:" + hashlib.sha256(body).hexdigest() != digest):
        raise SetupError(f"blob {digest} read back wrong: status {status}, {len(body)} bytes")
