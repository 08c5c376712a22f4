"""Push CPU per GiB, regd build against regd build, paired: `python -m benchmarks.pushab`.

A change worth 0.05-0.1 CPU s/GiB is smaller than what one push costs from one run to the
next on a shared virtual machine (0.1-0.4 s/GiB), so comparing two suite runs taken
minutes apart cannot show it. Here every build (`--regd REV`, repeatable; 'worktree' is
regd/ as on disk) runs at once, each with a fresh data directory, and the load generator
pushes `--blobs` fresh blobs (16 MiB) to each in turn, the order alternating from round to
round; a drift of the machine then moves both builds' figures of a round alike. Each
round restarts every build (the data of a round would fill the disk otherwise).

Printed per push form and build: the registry's CPU seconds per GiB pushed (all its
processes and threads, from /proc) as the median over rounds and the range, the median
of the per-round difference to the first build, and the median MiB/s. Run as root with
`--nice -5` on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import registries
from benchmarks.loadgen import BlobFactory, build_regbench, niced, run_load
from benchmarks.workloads import PUSH_MODES, _measure, _timeout, push_repo

MiB = 1 << 20


def _push(regbench: Path, reg: registries.Running, factory: BlobFactory, blobs: Path, mode: str,
          concurrency: int, nice: int) -> tuple[float, float]:
    """(CPU s/GiB, MiB/s) of one push of the blobs in `blobs`, measured as the suite's
    push workloads are."""
    args = {"addr": reg.addr, "repo": push_repo(mode), "blobs": blobs, "base": factory.base,
            "concurrency": concurrency, "mode": mode}
    nbytes = factory.blob_size * len(blobs.read_text().splitlines())
    m = _measure(reg, f"push {mode}", concurrency,
                 lambda: [run_load(niced([str(regbench)], nice), "push", args, _timeout(nbytes))], False)
    if m.errors or not m.bytes:
        raise RuntimeError(f"push {mode} to {reg.name}: {m.error_samples}")
    return m.server_cpu_per_unit, m.throughput


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.pushab", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--regd", action="append", default=[], metavar="REV", required=True,
                   help="regd as committed at REV ('worktree': as on disk); give two or more")
    p.add_argument("--mode", action="append", choices=PUSH_MODES, default=[],
                   help="push form (repeatable; default docker, chunked and monolithic)")
    p.add_argument("--rounds", type=int, default=8)
    p.add_argument("--blobs", type=int, default=64, help="blobs per push (default 64 of 16 MiB: 1 GiB)")
    p.add_argument("--blob-size", type=int, default=16 * MiB, help="bytes per blob (default 16 MiB)")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--regd-workers", type=int, default=1,
                   help="regd's [server] workers (default 1: one process, the least noisy)")
    p.add_argument("--nice", type=int, default=0, help="niceness of the registries and the load generator")
    a = p.parse_args(argv)
    modes = a.mode or ["docker", "chunked", "monolithic"]
    work = Path(tempfile.mkdtemp(prefix="regd-pushab-"))
    try:
        regbench = build_regbench()
        variants = registries.variants(work, a.regd, a.regd_workers, with_distribution=False)
        for _, settings in variants:
            settings.nice = a.nice
        factory = BlobFactory(work, a.blob_size)
        found: dict[tuple[str, int], list[tuple[float, float]]] = {}
        for r in range(a.rounds):
            running = [registries.start("regd", settings) for _, settings in variants]
            try:
                order = list(range(len(variants)))
                if r % 2:
                    order.reverse()
                for mode in modes:
                    for i in order:
                        blobs = factory.make(f"{r}-{mode}-{i}", a.blobs)
                        found.setdefault((mode, i), []).append(
                            _push(regbench, running[i], factory, blobs, mode, a.concurrency, a.nice))
                        blobs.unlink()
            finally:
                for reg in running:
                    reg.stop()
        for mode in modes:
            first = [cpu for cpu, _ in found[(mode, 0)]]
            for i, (label, _) in enumerate(variants):
                cpus = [cpu for cpu, _ in found[(mode, i)]]
                diff = statistics.median(c - f for c, f in zip(cpus, first, strict=True))
                rate = statistics.median(rate for _, rate in found[(mode, i)])
                print(f"{mode:10s} {label:40s} CPU {statistics.median(cpus):.3f} s/GiB "
                      f"({min(cpus):.2f}-{max(cpus):.2f}), {diff:+.3f} against the first, {rate:,.0f} MiB/s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
