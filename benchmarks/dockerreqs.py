"""Real clients end to end, request by request: `python -m benchmarks.dockerreqs` (root).

Each round starts distribution, then regd (as committed at each `--regd REV`), with a
fresh data directory and every request logged with its duration (regd's JSON access
log; distribution's "response completed" lines at level info), and runs against it:

- `docker push` of an image of `--layers` layers of random bytes (dockerd gzips them),
  then `docker pull` after removing every local copy (dockerd gunzips and extracts);
- `skopeo copy` of that image from the registry to a `dir:` (a pull), then back under a
  new name (a push of the already compressed layers, no dockerd in the way);
- `ctr images pull` (containerd, the Kubernetes path) into a fresh namespace.

Unless `--no-ceiling`, each round runs the same steps against a third registry, the load
generator's null registry keeping what is pushed (`regbench serve --keep yes`): it stores
each blob in memory as it came (no digest checked, nothing written to a disk, no
database) and sends it back from there. What a client takes against it is what the client
takes by itself; a registry can only add to it. It logs no requests.

Printed per registry and step: wall seconds, the CPU seconds of the registry's processes
(on a 2-CPU machine what a registry burns is taken from the client), and per kind of
request (`GET /v2/`, blob HEAD, blob GET, upload POST/PATCH/PUT, manifest HEAD/GET/PUT)
how many were made and their p50/p99 duration as the registry measured it: where the
time of each client goes.

Counted alike for both registries: distribution's log quotes a duration with a non-ASCII
unit (`http.response.duration="812.5µs"`) and logs a 4xx as "response completed with
error", and both are requests; the readiness probe of `registries.start` (user agent
Python-urllib) and requests that are not HTTP (a client's TLS probe on the plain port, which
regd logs as method UNKNOWN and distribution's Go server drops before logging) are not.
dockerd remembers which blob digests it pushed where and checks them with a HEAD before
the next push of the same layer, so before the timed rounds one untimed push and pull to a
throwaway registry gives every timed push the same history, and the order of the two
registries alternates from round to round.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import dockerflow, procstat, registries
from benchmarks.loadgen import build_regbench

MiB = 1 << 20
CEILING = "null --keep (the ceiling)"
_DIST = re.compile(r'http\.request\.method=(\w+) .*?http\.request\.uri="?([^"\s]+)"?.*?'
                   r'http\.response\.duration="?([\d.]+)(ns|µs|us|ms|s)"? .*?http\.response\.status=(\d+)')
_PROBE = "Python-urllib"  # registries.start's readiness probe
_DIST_PROBE = re.compile(rf'http\.request\.useragent="?{_PROBE}')
_UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1000.0}


def kind(method: str, path: str) -> str:
    path = path.split("?", 1)[0]
    if path.rstrip("/") == "/v2":
        return f"{method} /v2/"
    for part, name in (("/blobs/uploads", "upload"), ("/blobs/", "blob"), ("/manifests/", "manifest")):
        if part in path:
            return f"{method} {name}"
    return f"{method} other"


def requests(log: Path, start: int) -> list[tuple[str, float]]:
    """(kind, milliseconds) of each request logged after byte `start` of `log`."""
    with log.open("rb") as f:
        f.seek(start)
        text = f.read().decode(errors="replace")
    found = []
    for line in text.splitlines():
        if line.startswith("{"):
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if (rec.get("logger") == "regd.access" and rec.get("method") != "UNKNOWN"
                    and not str(rec.get("user_agent", "")).startswith(_PROBE)):
                found.append((kind(rec["method"], rec["path"]), float(rec["duration"]) * 1000))
        elif ("response completed" in line and not _DIST_PROBE.search(line)
              and (m := _DIST.search(line))):
            found.append((kind(m.group(1), m.group(2)), float(m.group(3)) * _UNITS[m.group(4)]))
    return found


Step = tuple[str, Callable[[str], None], Callable[[str], None] | None]


def steps(d: dockerflow.Dockerd, work: Path, tag: str) -> list[Step]:
    ref = "library/bench-docker:v1"

    def docker_push(addr: str) -> None:
        dockerflow.push(d, addr)

    def docker_pull(addr: str) -> None:
        dockerflow.pull(d, addr)

    def skopeo_pull(addr: str) -> None:
        shutil.rmtree(work / "skopeo", ignore_errors=True)
        subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{addr}/{ref}",
                        f"dir:{work / 'skopeo'}"], check=True, capture_output=True)

    def skopeo_push(addr: str) -> None:
        subprocess.run(["skopeo", "copy", "-q", "--dest-tls-verify=false", f"dir:{work / 'skopeo'}",
                        f"docker://{addr}/library/bench-skopeo:{tag}"], check=True, capture_output=True)

    def ctr_pull(addr: str) -> None:
        dockerflow.ctr_pull(dockerflow.ctr(d, "bench"), f"{addr}/{ref}")

    def ctr_forget(addr: str) -> None:  # untimed
        dockerflow.ctr_forget(dockerflow.ctr(d, "bench"), f"{addr}/{ref}")

    return [("docker push", docker_push, None), ("docker pull", docker_pull, None),
            ("skopeo copy (pull)", skopeo_pull, None), ("skopeo copy (push)", skopeo_push, None),
            ("ctr pull", ctr_pull, ctr_forget)]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def measure(reg: registries.Running, run: Callable[[str], None],
            cleanup: Callable[[str], None] | None) -> dict[str, object]:
    """One step against `reg`: wall seconds, the registry's CPU seconds, and per kind of
    request [count, p50 ms, p99 ms] from the registry's log."""
    start = reg.log.stat().st_size
    cpu0 = procstat.cpu_seconds(reg.pid)
    t0 = time.monotonic()
    run(reg.addr)
    seconds = time.monotonic() - t0
    cpu = procstat.cpu_seconds(reg.pid) - cpu0
    if cleanup is not None:
        cleanup(reg.addr)
    time.sleep(0.2)  # the last access-log lines
    by: dict[str, list[float]] = {}
    for k, ms in requests(reg.log, start):
        by.setdefault(k, []).append(ms)
    return {"seconds": seconds, "cpu": cpu,
            "requests": {k: [len(v), _pct(v, 0.5), _pct(v, 0.99)] for k, v in by.items()}}


def parse_args(prog: str, doc: str | None, rounds: int, argv: list[str] | None) -> argparse.Namespace:
    """The options of the real-client benchmarks (this one and `pullab`); applies --nice."""
    p = argparse.ArgumentParser(prog=f"python -m benchmarks.{prog}", description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--layers", default="8x16", metavar="NxMiB")
    p.add_argument("--regd", action="append", default=[], metavar="REV")
    p.add_argument("--regd-workers", type=int, default=None)
    p.add_argument("--nice", type=int, default=0, help="niceness of this script and all it starts")
    p.add_argument("--out", type=Path)
    p.add_argument("--no-ceiling", action="store_true",
                   help="leave out the null registry that keeps pushed blobs (the ceiling)")
    a = p.parse_args(argv)
    if a.nice:
        os.nice(a.nice)
    return a


def variants(work: Path, a: argparse.Namespace) -> list[tuple[str, registries.Settings]]:
    """(label, settings) of distribution, regd at each --regd, and unless --no-ceiling the
    null registry keeping what is pushed."""
    found = registries.variants(work, a.regd, a.regd_workers, True)
    if not a.no_ceiling:
        found.append((CEILING, registries.Settings(
            workdir=work, data_root=work, logdir=work, regbench=build_regbench(), null_keep=True)))
    return found


def registry_name(label: str) -> str:
    """Which registry `registries.start` runs for a label of `variants`."""
    return {"distribution": "distribution", CEILING: "null"}.get(label, "regd")


def make_image(d: dockerflow.Dockerd, work: Path, layers: str) -> None:
    """The image of `--layers` ("NxMiB") in dockerd."""
    count, _, mib = layers.partition("x")
    dockerflow.make_image(d, work, int(count), int(float(mib) * MiB))


def main(argv: list[str] | None = None) -> int:
    a = parse_args("dockerreqs", __doc__, 3, argv)
    work = Path(tempfile.mkdtemp(prefix="regd-dockerreqs-"))
    try:
        found = variants(work, a)
        for _label, s in found:
            s.request_log = True
        results: dict[str, dict[str, list[dict[str, object]]]] = {}
        with dockerflow.Dockerd(work, work) as d:
            make_image(d, work, a.layers)
            # Untimed: dockerd's record of where each layer digest was pushed, which adds a
            # HEAD per layer to every later push (see the docstring).
            with registries.start("distribution", found[0][1]) as reg:
                dockerflow.push(d, reg.addr)
                dockerflow.pull(d, reg.addr)
            for r in range(a.rounds):
                for label, settings in (found if r % 2 == 0 else found[::-1]):
                    with registries.start(registry_name(label), settings) as reg:
                        for step, run, cleanup in steps(d, work, f"r{r}"):
                            row = measure(reg, run, cleanup)
                            results.setdefault(label, {}).setdefault(step, []).append(row)
                            print(f"round {r + 1} {label:34} {step:20} {row['seconds']:6.2f} s "
                                  f"cpu {row['cpu']:5.2f} s "
                                  + " ".join(f"{k}: {v[0]}x p50 {v[1]:.1f} p99 {v[2]:.1f} ms"
                                             for k, v in sorted(row["requests"].items())),  # type: ignore[attr-defined]
                                  flush=True)
        print("\n| step | registry | seconds | registry CPU s | requests: count, p50 / p99 ms "
              "(the registry's own timing) |")
        print("|---|---|---|---|---|")
        steps_seen = [s for s, _run, _cleanup in steps(d, work, "x")]
        for step in steps_seen:
            for label, per in results.items():
                rows = per.get(step, [])
                if not rows:
                    continue
                secs = statistics.median(float(r["seconds"]) for r in rows)  # type: ignore[arg-type]
                cpu = statistics.median(float(r["cpu"]) for r in rows)  # type: ignore[arg-type]
                kinds = sorted({k for r in rows for k in r["requests"]})  # type: ignore[attr-defined]
                med = {k: [statistics.median(r["requests"][k][i] for r in rows if k in r["requests"])  # type: ignore[index,operator]
                           for i in range(3)] for k in kinds}
                detail = "; ".join(f"{k} {v[0]:.0f}x {v[1]:.1f} / {v[2]:.1f}" for k, v in med.items())
                print(f"| {step} | {label} | {secs:.2f} | {cpu:.2f} | {detail} |")
        if a.out:
            a.out.write_text(json.dumps(results, indent=1))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
