"""The benchmark suite still runs: a tiny run of every workload against the do-nothing
registry, in seconds. No timing is asserted (benchmarks/README.md); only that the code
works, every request succeeded, and the results were written."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import urllib.request
from pathlib import Path

import pytest

from benchmarks import procstat, pushab, registries, report, run
from benchmarks.loadgen import build_regbench
from benchmarks.workloads import Measurement
from tests.prerequisites import require_tool


def test_tiny_run_against_null_registry_writes_every_workload(tmp_path: Path) -> None:
    require_tool("cargo")  # builds the load generator
    markdown = tmp_path / "RESULTS.md"
    status = run.main(
        [
            "--registries",
            "null",
            "--rounds",
            "1",
            "--blob-size",
            "4096",
            "--min-blobs",
            "4",
            "--concurrency",
            "1,2",
            "--small-seconds",
            "0.2",
            "--out",
            str(tmp_path),
            "--markdown",
            str(markdown),
        ]
    )
    assert status == 0
    doc = json.loads(next(tmp_path.glob("results-*.json")).read_text())
    keys = set(doc["summary"]["null"])
    for expected in (
        "push docker c=2",
        "push chunked c=1",
        "push monolithic c=2",
        "push post c=1",
        "pull whole c=2",
        "pull range c=1",
        "small manifest GET tag c=64",
        "small manifest HEAD digest c=64",
        "small tags list c=64",
        "small /v2/ c=64",
        "mixed push+pull c=2",
    ):
        assert expected in keys
    assert doc["failures"] == []
    assert all(m["errors"] == 0 and m["throughput"] > 0 for m in doc["measurements"]["null"])
    assert "| push docker c=2 |" in markdown.read_text()


def _measurement(workload: str, throughput: float, errors: int = 0) -> Measurement:
    return Measurement(
        workload,
        8,
        "MiB/s",
        throughput,
        1.0,
        2.0,
        errors,
        1.0,
        0.5,
        "s/GiB",
        10.0,
        0.1,
        0.0,
        1 << 30,
        100,
        1.0,
    )


def test_ratio_is_regd_median_over_distribution_median() -> None:
    results = {
        "distribution": [_measurement("push docker", t) for t in (100, 300, 200)],
        "regd": [_measurement("push docker", t) for t in (250, 500, 400)],
    }
    rows = report.comparison_rows(report.summaries(results))
    assert rows == [["push docker c=8", "MiB/s", "200", "400", "2.00x", "-"]]


def test_any_error_is_listed_as_a_failure() -> None:
    results = {"regd": [_measurement("pull whole", 10, errors=1)]}
    assert len(report.failures(results)) == 1


def test_cpu_and_rss_of_this_process_are_read_from_proc() -> None:
    monitor = procstat.Monitor(os.getpid())
    monitor.start()
    sum(range(200_000))
    usage = monitor.stop()
    assert usage.cpu_seconds >= 0
    assert usage.peak_rss_bytes > 1 << 20


def test_trust_bench_runs_with_the_policy_holding() -> None:
    """benchmarks/trust_bench.py: its set-up checks that the trusted project refuses an
    unsigned image and serves the signed one; a tiny run measures both projects."""
    from benchmarks import trust_bench

    require_tool("cargo")  # builds the load generator
    text = trust_bench.main(["--rounds", "1", "--seconds", "0.3", "--concurrency", "2"])
    rows = [line for line in text.splitlines() if line.startswith("| GET ")]
    assert [row.split(" | ")[0] for row in rows] == ["| GET by tag", "| GET by digest"]


def test_pushab_compares_two_builds_round_by_round(capsys: pytest.CaptureFixture[str]) -> None:
    """benchmarks/pushab.py runs: both builds up, pushed to in turn, one line per form
    and build with the CPU per GiB and the difference to the first build."""
    require_tool("cargo")
    status = pushab.main(
        ["--regd", "HEAD", "--regd", "worktree", "--rounds", "2", "--blobs", "3", "--blob-size", "4096",
         "--mode", "docker", "--mode", "post"]
    )
    lines = [line for line in capsys.readouterr().out.splitlines() if "CPU" in line]
    assert status == 0
    assert [line.split()[0] for line in lines] == ["docker", "docker", "post", "post"]
    assert "regd HEAD" in lines[0] and "regd worktree" in lines[1]
    assert "+0.000 against the first" in lines[0]  # the first build against itself
    assert all(re.search(r"CPU \d+\.\d{3} s/GiB", line) for line in lines)


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_null_registry_keeping_blobs_gives_skopeo_back_what_it_pushed(tmp_path: Path) -> None:
    """`regbench serve --keep yes`, the ceiling of benchmarks/dockerreqs.py: a real client
    pushes an image to it and pulls the same bytes back, the manifest found by its digest."""
    skopeo = require_tool("skopeo")
    require_tool("cargo")
    layout = tmp_path / "oci"
    (layout / "blobs" / "sha256").mkdir(parents=True)

    def blob(data: bytes, media_type: str) -> dict[str, object]:
        digest = _sha256(data)
        (layout / "blobs" / "sha256" / digest.split(":")[1]).write_bytes(data)
        return {"mediaType": media_type, "digest": digest, "size": len(data)}

    layers = [blob(os.urandom(size), "application/vnd.oci.image.layer.v1.tar")
              for size in (300_000, 5 << 20)]
    config = blob(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {
        "type": "layers", "diff_ids": [d["digest"] for d in layers]}}).encode(),
        "application/vnd.oci.image.config.v1+json")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": config, "layers": layers}).encode()
    entry = blob(manifest, "application/vnd.oci.image.manifest.v1+json")
    entry["annotations"] = {"org.opencontainers.image.ref.name": "v1"}
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [entry]}))
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')

    port = registries.free_port()
    server = subprocess.Popen([str(build_regbench()), "serve", "--listen", f"127.0.0.1:{port}",
                               "--keep", "yes"], stderr=subprocess.DEVNULL)
    try:
        remote = f"docker://127.0.0.1:{port}/bench/keep:v1"
        for argv in (["--dest-tls-verify=false", f"oci:{layout}:v1", remote],
                     ["--src-tls-verify=false", remote, f"dir:{tmp_path / 'back'}"]):
            subprocess.run([skopeo, "copy", "--preserve-digests", *argv], check=True,
                           capture_output=True, timeout=120)
        by_digest = urllib.request.Request(f"http://127.0.0.1:{port}/v2/bench/keep/manifests/{entry['digest']}",
                                           method="HEAD")
        with urllib.request.urlopen(by_digest, timeout=10) as r:
            assert r.headers["Docker-Content-Digest"] == entry["digest"]
            assert r.headers["Content-Length"] == str(len(manifest))
    finally:
        server.kill()
        server.wait()
    back = tmp_path / "back"
    assert (back / "manifest.json").read_bytes() == manifest
    for d in [config, *layers]:
        hex_digest = str(d["digest"]).split(":")[1]
        assert (back / hex_digest).read_bytes() == (layout / "blobs" / "sha256" / hex_digest).read_bytes()


def test_pullab_pairs_each_registry_with_distribution_and_the_ceiling_round_by_round(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from benchmarks import pullab

    def rows(seconds: list[float]) -> list[dict[str, float]]:
        return [{"seconds": s, "client_cpu": 1.0, "registry_cpu": 0.1} for s in seconds]

    results = {
        "distribution": {c: rows([1.0, 1.2, 1.1]) for c in pullab.CLIENTS},
        "regd x": {c: rows([0.9, 1.25, 1.0]) for c in pullab.CLIENTS},
        pullab.CEILING: {c: rows([0.8, 1.0, 1.0]) for c in pullab.CLIENTS},
    }
    pullab.report(results)
    out = capsys.readouterr().out
    # differences -0.1, +0.05, -0.1: median -0.1, quicker in two rounds of three
    assert "| skopeo pull | regd x | distribution | -0.100 | 2 of 3 |" in out
    assert f"| ctr pull | regd x | {pullab.CEILING} | +0.100 | 0 of 3 |" in out
    assert f"| docker pull | {pullab.CEILING} | distribution | -0.200 | 3 of 3 |" in out
    assert "| docker pull | regd x | 1.000 | 1.00 | 0.10 |" in out
