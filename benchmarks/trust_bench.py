"""Content trust on the hot path: manifest GET with the policy and verification on, against
the same GET with them off, in the same regd process and the same run.

    python -m benchmarks.trust_bench [--rounds 3] [--seconds 10] [--concurrency 64] [--record]

One regd (the working tree, default configuration: one worker, fsync on, access log off,
auth off) with two public projects holding the same image under ``latest``:

- ``plain``: no policy (Harbor's default);
- ``trusted``: ``enable_content_trust_cosign``, ``enable_content_trust`` and
  ``content_trust_verify`` all "true", a cosign-key and an x509-ca trust anchor, and the
  image signed both ways (a cosign tag-scheme signature by an ECDSA P-256 key, a notation
  JWS envelope by a certificate under a private root), so every GET passes the whole
  check: project policy, signature lookup for two kinds, two verdicts.

Each round runs regbench (benchmarks/loadgen) for ``--seconds`` at ``--concurrency`` on
``GET /v2/<project>/app/manifests/latest`` and on the same by digest, plain then trusted.
The first GET of the trusted image pays for verification (a millisecond or so); the
timed requests cost lookups in caches: that is what the figure shows. ``--record`` writes
the table into the "Content trust" section of benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # `python benchmarks/trust_bench.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.loadgen import build_regbench, run_load
from benchmarks.procstat import Monitor
from benchmarks.registries import Running, free_port, regd_config
from benchmarks.workloads import http
from tests import trust_support as sign

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "RESULTS.md"
SECTION = "## Content trust"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
PROJECTS = ("plain", "trusted")


def _ok(reg: Running, method: str, path: str, body: object = None, status: int = 201) -> None:
    data = json.dumps(body).encode() if body is not None else b""
    got, _, answer = http(reg, method, path, data, {"Content-Type": "application/json"})
    if got != status:
        raise RuntimeError(f"{method} {path}: {got} {answer[:300]!r}")


def _push(reg: Running, repo: str, artifact: sign.Artifact, reference: str) -> None:
    for blob in artifact.blobs:
        got, _, answer = http(reg, "POST", f"/v2/{repo}/blobs/uploads/?digest={sign.sha256(blob)}", blob)
        if got != 201:
            raise RuntimeError(f"blob upload: {got} {answer[:200]!r}")
    got, _, answer = http(
        reg,
        "PUT",
        f"/v2/{repo}/manifests/{reference}",
        artifact.manifest,
        {"Content-Type": artifact.media_type},
    )
    if got != 201:
        raise RuntimeError(f"PUT manifest: {got} {answer[:200]!r}")


def setup(reg: Running) -> str:
    """The two projects, the image in both, the trusted one signed and anchored."""
    image = sign.image(7)
    key = sign.ec_key()
    root = sign.ca("Bench Root")
    leaf = sign.issue("bench signer", sign.ec_key(), root)
    for project in PROJECTS:
        _ok(reg, "POST", "/api/v2.0/projects", {"project_name": project, "metadata": {"public": "true"}})
        _push(reg, f"{project}/app", image, "latest")
    repo = "trusted/app"
    tag = "sha256-" + image.digest.removeprefix("sha256:") + ".sig"
    _push(reg, repo, sign.cosign_tag_signature([sign.cosign_layer(key, image.digest)]), tag)
    envelope = sign.jws_envelope(leaf, [root.certificate], sign.notation_payload(image))
    notation = sign.notation_signature(envelope, image)
    _push(reg, repo, notation, notation.digest)
    anchors = [
        ("release", "cosign-key", sign.public_pem(key)),
        ("root", "x509-ca", sign.pem(root.certificate)),
    ]
    for name, kind, pem in anchors:
        _ok(reg, "POST", "/api/v2.0/projects/trusted/trust-anchors", {"name": name, "kind": kind, "pem": pem})
    policy = {
        "enable_content_trust_cosign": "true",
        "enable_content_trust": "true",
        "content_trust_verify": "true",
    }
    _ok(reg, "PUT", "/api/v2.0/projects/trusted", {"metadata": policy}, 200)
    for project in PROJECTS:  # the policy holds, and the first GET pays for verification
        got, _, body = http(
            reg, "GET", f"/v2/{project}/app/manifests/latest", headers={"Accept": OCI_MANIFEST}
        )
        if got != 200 or body != image.manifest:
            raise RuntimeError(f"GET {project}/app:latest: {got} {body[:300]!r}")
    _push(reg, repo, sign.image(8), "unsigned")
    got, _, _ = http(reg, "GET", f"/v2/{repo}/manifests/unsigned", headers={"Accept": OCI_MANIFEST})
    if got != 412:
        raise RuntimeError(f"an unsigned image in the trusted project answered {got}, not 412")
    return image.digest


def measure(regbench: Path, reg: Running, path: str, args: argparse.Namespace) -> tuple[float, float]:
    """Requests per second of ``GET path``, and the server's CPU milliseconds per request
    (the cost, which other load on a shared machine disturbs less than the rate); any
    error invalidates the run."""
    load = {
        "addr": reg.addr,
        "concurrency": args.concurrency,
        "seconds": args.seconds,
        "method": "GET",
        "path": path,
        "header": [f"Accept: {OCI_MANIFEST}"],
    }
    monitor = Monitor(reg.pid)
    monitor.start()
    result = run_load([str(regbench)], "requests", load, args.seconds + 60)
    usage = monitor.stop()
    if result.errors:
        raise RuntimeError(f"GET {path}: {result.errors} errors: {result.error_samples[:3]}")
    return result.requests / result.seconds, usage.cpu_seconds * 1000 / max(result.requests, 1)


Rates = dict[str, dict[str, list[tuple[float, float]]]]


def run(args: argparse.Namespace) -> Rates:
    regbench = build_regbench()
    work = Path(tempfile.mkdtemp(prefix="regd-trust-bench-"))
    data = work / "data"
    data.mkdir()
    config = work / "regd.toml"
    config.write_text(regd_config(False, True))
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [
        sys.executable,
        "-m",
        "regd",
        "serve",
        "--listen",
        f"127.0.0.1:{port}",
        "--data-dir",
        str(data),
        "--config",
        str(config),
    ]
    rates: Rates = {}
    with Running("regd", argv, port, data, work / "regd.log", env) as reg:
        reg.wait_ready()
        digest = setup(reg)
        for round_ in range(args.rounds):
            for reference in ("latest", digest):
                what = "by tag" if reference == "latest" else "by digest"
                for project in PROJECTS:
                    rate, cpu = measure(regbench, reg, f"/v2/{project}/app/manifests/{reference}", args)
                    rates.setdefault(what, {}).setdefault(project, []).append((rate, cpu))
                    print(
                        f"round {round_ + 1}: GET {what:9} {project:8} {rate:7.0f} req/s "
                        f"{cpu:.3f} ms CPU/req",
                        flush=True,
                    )
    return rates


def table(rates: Rates, args: argparse.Namespace) -> str:
    lines = [
        f"manifest GET at c = {args.concurrency}, {args.seconds:g} s each, median of {args.rounds} rounds "
        f"(one regd, default configuration; {time.strftime('%Y-%m-%d')}):",
        "",
        "| request | req/s, policy off | req/s, cosign + notation verified | ratio "
        "| server CPU ms/req, off | on |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for what, by_project in rates.items():
        off, on = (statistics.median(r for r, _ in by_project[p]) for p in PROJECTS)
        cpu_off, cpu_on = (statistics.median(c for _, c in by_project[p]) for p in PROJECTS)
        lines.append(f"| GET {what} | {off:.0f} | {on:.0f} | {on / off:.2f} | {cpu_off:.3f} | {cpu_on:.3f} |")
    return "\n".join(lines) + "\n"


def record(text: str) -> None:
    body = RESULTS.read_text() if RESULTS.exists() else ""
    section = f"{SECTION}\n\n`python -m benchmarks.trust_bench --record`\n\n{text}"
    if SECTION in body:
        start = body.index(SECTION)
        end = body.find("\n## ", start + len(SECTION))
        body = body[:start] + section + (body[end + 1 :] if end != -1 else "")
    else:
        body = body.rstrip("\n") + "\n\n" + section
    RESULTS.write_text(body)


def main(argv: list[str] | None = None) -> str:
    """Run; returns the table (also printed, and recorded with ``--record``)."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--record", action="store_true", help="write the table into RESULTS.md")
    args = parser.parse_args(argv)
    text = table(run(args), args)
    print(text)
    if args.record:
        record(text)
    return text


if __name__ == "__main__":
    main()
