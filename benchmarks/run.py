"""Run the benchmark suite: `python -m benchmarks.run [--quick] [--rounds 3] [--only WORKLOAD]`.

Each round starts every registry in turn (distribution, regd, then the do-nothing ceiling),
alone on loopback with a fresh data directory, runs the workloads against it, and stops it.
The medians over rounds are printed and written to a JSON file and benchmarks/RESULTS.md.
Exit status 1 when any request failed: such a run is invalid.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/run.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import auth, dockerflow, registries, report
from benchmarks.loadgen import BlobFactory, build_regbench, niced
from benchmarks.workloads import REPOSITORIES, BlobSets, Measurement, MiB, Plan, Session

HERE = Path(__file__).resolve().parent


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="smoke-sized run: 1 MiB blobs, 16 per workload, 2 s small requests, 1 round")
    p.add_argument("--rounds", type=int, help="rounds of A/B (default 3, 1 with --quick)")
    p.add_argument("--only", action="append", default=[], metavar="WORKLOAD",
                   help="run only workloads whose name starts with this (repeatable): "
                        "'push docker', 'push', 'pull range', 'small', 'mixed', 'auth'...")
    p.add_argument("--registries", default="distribution,regd,null",
                   help="comma-separated, from: distribution, regd, null (default: all three)")
    p.add_argument("--blob-size", type=int, help="bytes per blob (default 16 MiB)")
    p.add_argument("--min-blobs", type=int, help="blobs per push workload (default 64)")
    p.add_argument("--concurrency", help="comma-separated levels (default 1,8,32,128)")
    p.add_argument("--small-seconds", type=float, help="duration of each small-request workload")
    p.add_argument("--no-auth", action="store_true", help="skip the auth-on workloads")
    p.add_argument("--docker", action="store_true",
                   help="also docker push and pull an image through a private dockerd (needs root)")
    p.add_argument("--docker-layers", default="8x16", metavar="NxMiB",
                   help="the docker image: N layers of M MiB of random bytes (default 8x16)")
    p.add_argument("--regd-commit", default="HEAD", metavar="REV",
                   help="run regd as committed at REV, from a snapshot of regd/ (default HEAD); "
                        "'worktree': a snapshot of regd/ as it is on disk now; "
                        "'installed': the `regd` on PATH, read afresh at every start")
    p.add_argument("--regd-workers", type=int, default=None, metavar="N",
                   help="regd's [server] workers (default: unset, regd's own default, \"auto\")")
    p.add_argument("--nice", type=int, default=0,
                   help="niceness of registries and load generator, e.g. -5 (root) to keep other "
                        "work on a shared machine from skewing a run (default 0)")
    p.add_argument("--data-root", type=Path,
                   help="where the registries' data directories go (default: a temporary dir)")
    p.add_argument("--out", type=Path, default=HERE / "results",
                   help="directory for the JSON result file (default benchmarks/results)")
    p.add_argument("--markdown", type=Path, default=HERE / "RESULTS.md",
                   help="the results page to write (default benchmarks/RESULTS.md)")
    p.add_argument("--notes", type=Path, help="a markdown file appended to the results page")
    p.add_argument("--render", type=Path, metavar="RESULTS_JSON", action="append", default=[],
                   help="run nothing: rewrite --markdown and its plot from a result file; given "
                        "again, a later file's registries replace the earlier's (a re-measured ceiling)")
    return p.parse_args(argv)


def make_plan(a: argparse.Namespace) -> Plan:
    quick = Plan(blob_size=1 * MiB, min_blobs=16, small_seconds=2.0, large_blob_size=4 * MiB,
                 huge_blob_size=16 * MiB)
    plan = quick if a.quick else Plan()
    changes: dict[str, object] = {"only": tuple(a.only)}
    if a.blob_size:
        changes["blob_size"] = a.blob_size
        changes["large_blob_size"] = a.blob_size
        changes["huge_blob_size"] = 4 * a.blob_size
        changes["chunk_size"] = max(1, min(plan.chunk_size, a.blob_size // 4))
        changes["range_size"] = max(1, min(plan.range_size, a.blob_size // 4))
    elif a.quick:
        changes["chunk_size"] = 256 << 10
        changes["range_size"] = 256 << 10
    if a.min_blobs:
        changes["min_blobs"] = a.min_blobs
    if a.concurrency:
        levels = tuple(int(c) for c in a.concurrency.split(","))
        changes["concurrencies"] = levels
        changes["large_concurrency"] = max(levels)
        changes["mixed_concurrencies"] = tuple(c for c in levels if c >= 2) or (2,)
    if a.small_seconds:
        changes["small_seconds"] = a.small_seconds
    import dataclasses

    return dataclasses.replace(plan, **changes)  # type: ignore[arg-type]


def available(name: str, regd_commit: str) -> str | None:
    """Why registry `name` cannot run here, or None."""
    exe = {"distribution": "docker-registry",
           "regd": "regd" if regd_commit == "installed" else "git"}.get(name)
    if exe and shutil.which(exe) is None:
        return f"`{exe}` not found on PATH"
    return None


@dataclass
class Context:
    """Everything fixed for the run, handed to each round."""

    plan: Plan
    names: list[str]
    settings: registries.Settings
    blobs: BlobSets
    with_auth: bool
    docker: dockerflow.Dockerd | None = None
    image_bytes: int = 0
    results: dict[str, list[Measurement]] = field(default_factory=dict)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    a = parse_args(args)
    if a.render:
        return render(a)
    rounds = a.rounds or (1 if a.quick else 3)
    plan = make_plan(a)
    names = [n.strip() for n in a.registries.split(",") if n.strip()]
    for n in names:
        if n not in registries.NAMES:
            sys.exit(f"unknown registry {n!r}; choose from {registries.NAMES}")
    missing = {n: why for n in names if (why := available(n, a.regd_commit))}
    for n, why in missing.items():
        print(f"!!! skipping {n}: {why}", file=sys.stderr)
    names = [n for n in names if n not in missing]

    started = time.monotonic()
    workdir = Path(tempfile.mkdtemp(prefix="regd-bench-"))
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        with contextlib.ExitStack() as stack:
            ctx = prepare(a, plan, names, workdir, stamp, stack)
            regd_version = ctx.settings.regd_commit
            for r in range(rounds):
                for name in names:
                    print(f"round {r + 1}/{rounds}: {name}", flush=True)
                    run_registry(ctx, name)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    meta = {
        "command": "python -m benchmarks.run " + shlex.join(args),
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "rounds": rounds, "order": names, "plan": vars(plan) | {"only": list(plan.only)},
        "machine": report.machine(), "versions": report.versions(regd_version),
        "skipped": missing, "wall_seconds": round(time.monotonic() - started),
    }
    return finish(a, meta, ctx.results, stamp)


def prepare(a: argparse.Namespace, plan: Plan, names: list[str], workdir: Path, stamp: str,
            stack: contextlib.ExitStack) -> Context:
    """Builds regbench, makes the blobs, the token issuer and (with --docker) dockerd."""
    data_root = a.data_root or workdir
    data_root.mkdir(parents=True, exist_ok=True)
    logdir = a.out / f"logs-{stamp}"
    logdir.mkdir(parents=True, exist_ok=True)
    print(f"building the load generator; work dir {workdir}, logs in {logdir}", flush=True)
    settings = registries.Settings(workdir=workdir, data_root=data_root, logdir=logdir,
                                   regbench=build_regbench(), repositories=REPOSITORIES, nice=a.nice,
                                   regd_workers=a.regd_workers)
    if "regd" in names and a.regd_commit != "installed":
        settings.regd_source = workdir / "regd-src"
        settings.regd_commit = registries.snapshot_regd(a.regd_commit, settings.regd_source)
        print(f"regd: {settings.regd_commit}", flush=True)
    with_auth = not a.no_auth and plan.touches("auth") and any(
        n in ("distribution", "regd") for n in names)
    if with_auth:
        settings.issuer = auth.make_issuer(workdir)
    print("preparing blobs and their digests", flush=True)
    blobs = BlobSets(BlobFactory(workdir, plan.blob_size), plan)
    ctx = Context(plan, names, settings, blobs, with_auth, results={n: [] for n in names})
    if a.docker and plan.touches("docker"):
        print("starting dockerd and loading the image", flush=True)
        ctx.docker = stack.enter_context(dockerflow.Dockerd(workdir, logdir))
        layers, _, mib = a.docker_layers.partition("x")
        ctx.image_bytes = dockerflow.make_image(ctx.docker, workdir, int(layers), int(float(mib) * MiB))
    return ctx


def run_registry(ctx: Context, name: str) -> None:
    """One round's sessions against registry `name`: without auth, then with auth."""
    report_one = printer(ctx.results, name)
    sessions = [False] if ctx.plan.wants_unauthenticated() else []
    if ctx.with_auth and registries.supports_auth(name, ctx.settings):
        sessions.append(True)
    for authed in sessions:
        try:
            with registries.start(name, ctx.settings, with_auth=authed) as reg:
                regbench = niced([str(ctx.settings.regbench)], ctx.settings.nice)
                session = Session(reg, ctx.plan, ctx.blobs, regbench)
                if authed:
                    session.run_auth(report_one)
                    continue
                session.run_all(report_one)
                if ctx.docker and name != "null":
                    session.run_docker(ctx.docker, ctx.image_bytes, report_one)
        except Exception as e:  # any failure invalidates the run, loudly, and the run goes on
            failed = Measurement(f"{'auth ' if authed else ''}session", 0, "-", 0, 0, 0, 1,
                                 0, 0, "-", 0, 0, 0, 0, 0, 0, error_samples=[repr(e)])
            report_one(failed)


def printer(results: dict[str, list[Measurement]], name: str) -> Callable[[Measurement], None]:
    """Records a measurement of registry `name` and prints it at once."""
    def report_one(m: Measurement) -> None:
        results[name].append(m)
        loud = f"   !!! {m.errors} ERRORS: {m.error_samples[:2]}" if m.errors else ""
        if m.note.startswith("not supported"):
            print(f"  {name:12} {m.workload:28} {m.note}", flush=True)
            return
        print(f"  {name:12} {m.key:28} {m.throughput:10,.1f} {m.unit:5}  p50 {m.p50_ms:8.2f} ms"
              f"  p99 {m.p99_ms:8.2f} ms  cpu {m.server_cpu_per_unit:7.3f} {m.cpu_unit}"
              f"  rss {m.peak_rss_mib:6.0f} MiB{busy(m)}{loud}", flush=True)
    return report_one


def busy(m: Measurement) -> str:
    """A warning when something else used more than 10% of one core during `m`."""
    share = report.other_load(m)
    return f"  (other CPU {share:.0%} of a core)" if share is not None and share > 0.10 else ""


def render(a: argparse.Namespace) -> int:
    """Rewrites RESULTS.md and the plot from JSON result files (to add notes, say)."""
    docs = [json.loads(p.read_text()) for p in a.render]
    doc = docs[0]
    results: dict[str, list[Measurement]] = {}
    for path, d in zip(a.render, docs, strict=True):
        for registry, ms in d["measurements"].items():
            results[registry] = [Measurement(**m) for m in ms]
            if d is not doc:
                doc["meta"]["versions"][f"{registry} measured by"] = f"`{d['meta']['command']}` ({path.name})"
    summ = report.summaries(results)
    plot_path = a.markdown.with_suffix(".png")
    plotted = report.plot(summ, plot_path)
    notes = a.notes.read_text() if a.notes else ""
    report.write_markdown(a.markdown, doc["meta"], results, plot_path.name if plotted else None, notes,
                          json_name=a.render[0].name)
    print(f"wrote {a.markdown}" + (f", {plot_path}" if plotted else ""))
    return 0


def finish(a: argparse.Namespace, meta: dict[str, object], results: dict[str, list[Measurement]],
           stamp: str) -> int:
    """Prints the comparison, writes the JSON, RESULTS.md and the plot; 1 if any error."""
    summ = report.summaries(results)
    print()
    print(report.text_table(report.COMPARISON_HEADER, report.comparison_rows(summ)))
    json_path = a.out / f"results-{stamp}.json"
    report.write_json(json_path, meta, results)
    plot_path = a.markdown.with_suffix(".png")
    plotted = report.plot(summ, plot_path)
    notes = a.notes.read_text() if a.notes else ""
    report.write_markdown(a.markdown, meta, results, plot_path.name if plotted else None, notes,
                          json_name=json_path.name)
    print(f"\nwrote {json_path}, {a.markdown}" + (f", {plot_path}" if plotted else ""))
    bad = report.failures(results)
    if bad:
        print("\n" + "!" * 72 + "\n!!! INVALID RUN: requests failed:\n" + "\n".join(bad) + "\n" + "!" * 72,
              file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
