"""Small-request latency during cold pulls: `python -m benchmarks.coldpull`.

Each round starts every registry in turn (distribution, then regd as committed at each
`--regd` revision) with a fresh data directory, pushes `--blobs` blobs of `--blob-mib`
MiB, drops their pages from the page cache (fsync + POSIX_FADV_DONTNEED on every file of
the data directory), and pulls them all at once with curl while one client sends
`GET /v2/` every 5 ms on a keep-alive connection and times each answer (`--limit-rate`
paces every pull the same, so that a registry that pulls faster is not penalised by the
CPU its faster pulls take; `--slow-disk` throttles the registry's disk reads, to show
what a slow disk does). Then the same
pulls again, now from the page cache ("warm"). A registry that reads the disk on its
event loop makes `/v2/` wait behind it. Printed: p50/p99/max of `/v2/` and the pulls'
MiB/s, per registry and phase, medians over rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import http.client
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import registries

REPO = "library/coldpull"


def _push(addr: str, data: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    conn = http.client.HTTPConnection(addr, timeout=120)
    conn.request("POST", f"/v2/{REPO}/blobs/uploads/")
    resp = conn.getresponse()
    resp.read()
    location = resp.getheader("Location") or ""
    sep = "&" if "?" in location else "?"
    path = location.split(addr, 1)[-1] if location.startswith("http") else location
    conn.request("PUT", f"{path}{sep}digest={digest}", body=data,
                 headers={"Content-Type": "application/octet-stream"})
    resp = conn.getresponse()
    resp.read()
    if resp.status != 201:
        raise RuntimeError(f"push: {resp.status}")
    conn.close()
    return digest


def _evict(root: Path) -> None:
    os.sync()
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(Path(dirpath) / name, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


BLKIO = Path("/sys/fs/cgroup/blkio")


class SlowDisk:
    """Reads of the registry's process tree from the data directory's disk limited to
    `rate` bytes/s (a cgroup v1 blkio throttle, root only): a slow disk on a fast one."""

    def __init__(self, rate: int, data_dir: Path) -> None:
        st = os.stat(data_dir)
        self.device = f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"
        self.group = BLKIO / f"regd-coldpull-{os.getpid()}"
        self.group.mkdir()
        (self.group / "blkio.throttle.read_bps_device").write_text(f"{self.device} {rate}\n")

    def add(self, pid: int) -> None:
        for task in [pid, *_descendants(pid)]:
            (self.group / "cgroup.procs").write_text(f"{task}\n")

    def close(self) -> None:
        for task in (self.group / "cgroup.procs").read_text().split():
            with contextlib.suppress(OSError):
                (BLKIO / "cgroup.procs").write_text(f"{task}\n")
        with contextlib.suppress(OSError):
            self.group.rmdir()


def _descendants(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
            found += [int(child), *_descendants(int(child))]
    return found


def _probe(addr: str, stop: threading.Event, out: list[float]) -> None:
    conn = http.client.HTTPConnection(addr, timeout=30)
    while not stop.is_set():
        t0 = time.perf_counter()
        conn.request("GET", "/v2/")
        conn.getresponse().read()
        out.append((time.perf_counter() - t0) * 1000)
        time.sleep(0.005)
    conn.close()


def _pulls(reg: registries.Running, digests: list[str], nbytes: int, rate: str) -> dict[str, float]:
    latencies: list[float] = []
    stop = threading.Event()
    prober = threading.Thread(target=_probe, args=(reg.addr, stop, latencies))
    prober.start()
    time.sleep(0.3)
    before = len(latencies)
    t0 = time.monotonic()
    limit = ["--limit-rate", rate] if rate else []
    curls = [subprocess.Popen(["curl", "-sf", *limit, "-o", "/dev/null", f"{reg.url}/v2/{REPO}/blobs/{d}"])
             for d in digests]
    codes = [c.wait() for c in curls]
    seconds = time.monotonic() - t0
    stop.set()
    prober.join()
    during = sorted(latencies[before:]) or [0.0]
    if any(codes):
        raise RuntimeError(f"curl exit codes {codes}")
    return {"p50": during[len(during) // 2], "p99": during[min(len(during) - 1, int(len(during) * 0.99))],
            "max": during[-1], "probes": len(during), "MiB/s": nbytes / 2**20 / seconds}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.coldpull", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--blobs", type=int, default=4)
    p.add_argument("--blob-mib", type=int, default=192)
    p.add_argument("--regd", action="append", default=[], metavar="REV",
                   help="regd as committed at REV ('worktree': as on disk); repeatable (default HEAD)")
    p.add_argument("--regd-workers", type=int, default=None,
                   help="regd's [server] workers (default: regd's own, \"auto\")")
    p.add_argument("--no-distribution", action="store_true")
    p.add_argument("--slow-disk", type=int, default=0, metavar="BYTES_PER_S",
                   help="limit the registry's disk reads to this rate (cgroup v1 blkio throttle; root)")
    p.add_argument("--limit-rate", default="", metavar="RATE",
                   help="curl's --limit-rate per pull (e.g. 20M): every registry pulls at the same pace, so "
                        "/v2/ latency compares the loops, not the pull rates (default: unlimited)")
    p.add_argument("--nice", type=int, default=0,
                   help="niceness of this script, so of the registries and clients it starts (-5: root)")
    p.add_argument("--out", type=Path, help="write every measurement to this JSON file")
    a = p.parse_args(argv)
    if a.nice:
        os.nice(a.nice)  # the registries and clients it starts inherit it
    work = Path(tempfile.mkdtemp(prefix="regd-coldpull-"))
    try:
        return _run(a, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(a: argparse.Namespace, work: Path) -> int:
    variants = registries.variants(work, a.regd, a.regd_workers, not a.no_distribution)
    size = a.blob_mib * 2**20
    payload = bytearray(os.urandom(size))
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for r in range(a.rounds):
        for label, settings in variants:
            name = "distribution" if label == "distribution" else "regd"
            with registries.start(name, settings) as reg:
                digests = []
                for i in range(a.blobs):
                    payload[:16] = f"{r:04d}{i:04d}{time.monotonic_ns() % 10**8:08d}".encode()
                    digests.append(_push(reg.addr, bytes(payload)))
                slow = SlowDisk(a.slow_disk, reg.data_dir) if a.slow_disk else None
                try:
                    if slow is not None:
                        slow.add(reg.pid)
                    for phase in ("cold", "warm"):
                        if phase == "cold":
                            _evict(reg.data_dir)
                        m = _pulls(reg, digests, a.blobs * size, a.limit_rate)
                        results.setdefault(label, {}).setdefault(phase, []).append(m)
                        print(f"round {r + 1} {label:40} {phase}: /v2/ p50 {m['p50']:.2f} ms"
                              f" p99 {m['p99']:.2f} ms max {m['max']:.1f} ms ({m['probes']:.0f} probes),"
                              f" pulls {m['MiB/s']:.0f} MiB/s", flush=True)
                finally:
                    if slow is not None:
                        slow.close()
    print("\n| registry | phase | /v2/ p50 ms | /v2/ p99 ms | /v2/ max ms | pulls MiB/s |")
    print("|---|---|---|---|---|---|")
    for label, phases in results.items():
        for phase, ms in phases.items():
            med = {k: statistics.median(m[k] for m in ms) for k in ("p50", "p99", "max", "MiB/s")}
            print(f"| {label} | {phase} | {med['p50']:.2f} | {med['p99']:.2f} | {med['max']:.1f} |"
                  f" {med['MiB/s']:,.0f} |")
    if a.out:
        a.out.write_text(json.dumps({"args": vars(a) | {"out": str(a.out)}, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
