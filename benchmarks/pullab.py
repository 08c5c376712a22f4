"""Real clients' pulls, registry against registry, paired by round: `python -m benchmarks.pullab`
(root).

Every registry runs at once: distribution, regd as committed at each `--regd REV`, and
the null registry keeping what is pushed (`regbench serve --keep yes`, the ceiling: no
registry can make a client quicker than it does). One image (`--layers` random layers,
which dockerd gzips) is pushed to each by docker and pulled once from each, untimed, so
that every registry serves it from the page cache. Then each round pulls it from every
registry in turn (the order reversed every other round) with each client:

- `docker pull`, after every local copy of the image is removed (dockerd fetches,
  gunzips and extracts every layer);
- `skopeo copy` to a fresh `dir:` (fetch and verify, no extraction);
- `ctr images pull` (containerd, the Kubernetes path), its content removed afterwards.

Timed: wall seconds, the CPU seconds of the client (dockerd and its containerd for docker
and ctr, plus the ctr or skopeo process) and of the registry. Printed per client and
registry: medians over rounds; then per client, each registry against distribution and
against the ceiling: the median of the per-round differences and in how many rounds it
was quicker. `benchmarks/dockerreqs.py` times the clients' requests one registry at a
time after a push; this one puts the pulls of one client from every registry next to
each other in time, where the machine's drift over minutes touches them all alike.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import dockerflow, dockerreqs, procstat, registries
from benchmarks.dockerreqs import CEILING

REPO = "library/bench-docker:v1"
CLIENTS = ("docker pull", "skopeo pull", "ctr pull")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


class Clients:
    """The three clients' pulls, each leaving nothing behind that the next pull could use."""

    def __init__(self, d: dockerflow.Dockerd, work: Path) -> None:
        self.d = d
        self.work = work
        self.ctr = dockerflow.ctr(d, "pullab")
        self.tagged: list[str] = []  # docker's local names of the image

    def forget_docker(self) -> None:
        if self.tagged:
            self.d.docker("rmi", *self.tagged)
            self.tagged = []

    def docker(self, addr: str) -> None:
        self.d.docker("pull", f"{addr}/{REPO}")
        self.tagged = [f"{addr}/{REPO}"]

    def skopeo(self, addr: str) -> None:
        out = self.work / "skopeo"
        shutil.rmtree(out, ignore_errors=True)
        subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{addr}/{REPO}",
                        f"dir:{out}"], check=True, capture_output=True)

    def ctr_pull(self, addr: str) -> None:
        dockerflow.ctr_pull(self.ctr, f"{addr}/{REPO}")

    def forget_ctr(self, addr: str) -> None:
        dockerflow.ctr_forget(self.ctr, f"{addr}/{REPO}")

    def pulls(self) -> dict[str, tuple[Callable[[str], None], Callable[[str], None]]]:
        """client -> (the timed pull, the untimed cleanup before it or after it)."""
        return {"docker pull": (self.docker, lambda _addr: self.forget_docker()),
                "skopeo pull": (self.skopeo, lambda _addr: None),
                "ctr pull": (self.ctr_pull, self.forget_ctr)}


def timed(c: Clients, reg: registries.Running, client: str) -> dict[str, float]:
    run, cleanup = c.pulls()[client]
    if client == "docker pull":
        cleanup(reg.addr)
    dockerd0, children0 = procstat.cpu_seconds(c.d.proc.pid), _children_cpu()
    reg0 = procstat.cpu_seconds(reg.pid)
    t0 = time.monotonic()
    run(reg.addr)
    seconds = time.monotonic() - t0
    client_cpu = procstat.cpu_seconds(c.d.proc.pid) - dockerd0 + _children_cpu() - children0
    registry_cpu = procstat.cpu_seconds(reg.pid) - reg0
    if client == "ctr pull":
        cleanup(reg.addr)
    return {"seconds": seconds, "client_cpu": client_cpu, "registry_cpu": registry_cpu}


def report(results: dict[str, dict[str, list[dict[str, float]]]]) -> None:
    labels = list(results)
    print("\n| client | registry | seconds | client CPU s | registry CPU s |")
    print("|---|---|---|---|---|")
    for client in CLIENTS:
        for label in labels:
            rows = results[label][client]
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            print(f"| {client} | {label} | {med['seconds']:.3f} | {med['client_cpu']:.2f} "
                  f"| {med['registry_cpu']:.2f} |")
    print("\n| client | registry | against | median difference s | rounds quicker |")
    print("|---|---|---|---|---|")
    for client in CLIENTS:
        for base in ("distribution", CEILING):
            for label in labels:
                if label == base or base not in results:
                    continue
                pairs = list(zip((r["seconds"] for r in results[label][client]),
                                 (r["seconds"] for r in results[base][client]), strict=True))
                diff = statistics.median(a - b for a, b in pairs)
                quicker = sum(a < b for a, b in pairs)
                print(f"| {client} | {label} | {base} | {diff:+.3f} | {quicker} of {len(pairs)} |")


def main(argv: list[str] | None = None) -> int:
    a = dockerreqs.parse_args("pullab", __doc__, 8, argv)
    work = Path(tempfile.mkdtemp(prefix="regd-pullab-"))
    try:
        results: dict[str, dict[str, list[dict[str, float]]]] = {}
        with ExitStack() as stack, dockerflow.Dockerd(work, work) as d:
            dockerreqs.make_image(d, work, a.layers)
            running = []
            for label, settings in dockerreqs.variants(work, a):
                reg = stack.enter_context(registries.start(dockerreqs.registry_name(label), settings))
                d.docker("tag", dockerflow.IMAGE, f"{reg.addr}/{REPO}")
                d.docker("push", f"{reg.addr}/{REPO}")
                running.append((label, reg))
            c = Clients(d, work)
            c.tagged = [dockerflow.IMAGE] + [f"{reg.addr}/{REPO}" for _, reg in running]
            for _label, reg in running:  # untimed: every registry's blobs in the page cache
                for client in CLIENTS:
                    timed(c, reg, client)
            for r in range(a.rounds):
                for client in CLIENTS:
                    for label, reg in (running if r % 2 == 0 else running[::-1]):
                        row = timed(c, reg, client)
                        results.setdefault(label, {}).setdefault(client, []).append(row)
                        print(f"round {r + 1} {client:12} {label:40} {row['seconds']:6.3f} s  "
                              f"client cpu {row['client_cpu']:5.2f}  registry cpu {row['registry_cpu']:5.2f}",
                              flush=True)
            c.forget_docker()
        report(results)
        if a.out:
            a.out.write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
