"""skopeo copies an OCI image into the registry and out again without changing a byte.

Unlike docker, skopeo pushes the OCI media types as they are, and ``--preserve-digests``
makes it refuse any conversion, so the manifest digest must survive the round trip.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from .daemons import Dockerd, RegistryServer
from .images import make_image
from .tools import run

pytestmark = pytest.mark.e2e


def sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def oci_layout_manifest(layout: Path) -> tuple[str, dict[str, Any]]:
    """The digest and the parsed manifest of the one image in an OCI layout directory."""
    (entry,) = json.loads((layout / "index.json").read_text())["manifests"]
    algorithm, _, hex_digest = entry["digest"].partition(":")
    manifest = json.loads((layout / "blobs" / algorithm / hex_digest).read_bytes())
    return entry["digest"], manifest


@pytest.fixture(scope="module")
def oci_image(dockerd: Dockerd, skopeo: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-layer image built by docker, exported as an OCI layout directory."""
    make_image(dockerd, "regd-e2e/skopeo-source:latest", layers=3)
    layout = tmp_path_factory.mktemp("oci") / "layout"
    # skopeo 1.9 ignores DOCKER_HOST; the daemon socket must be given explicitly.
    run(
        [
            skopeo,
            "copy",
            "--src-daemon-host",
            dockerd.host,
            "docker-daemon:regd-e2e/skopeo-source:latest",
            f"oci:{layout}:v1",
        ]
    )
    return layout


def test_skopeo_round_trip_keeps_manifest_and_layer_digests(
    skopeo: str, registry: RegistryServer, oci_image: Path, tmp_path: Path
) -> None:
    digest, manifest = oci_layout_manifest(oci_image)
    layer_digests = [layer["digest"] for layer in manifest["layers"]]
    remote = f"docker://{registry.host}/library/skopeo:v1"

    run(
        [
            skopeo,
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            f"oci:{oci_image}:v1",
            remote,
        ]
    )
    raw = run([skopeo, "inspect", "--raw", "--tls-verify=false", remote]).stdout
    inspected = json.loads(run([skopeo, "inspect", "--tls-verify=false", remote]).stdout)
    run(
        [
            skopeo,
            "copy",
            "--preserve-digests",
            "--src-tls-verify=false",
            remote,
            f"dir:{tmp_path / 'out'}",
        ]
    )

    assert sha256(raw.encode()) == digest
    assert inspected["Digest"] == digest
    assert inspected["Layers"] == layer_digests
    out = tmp_path / "out"
    assert sha256((out / "manifest.json").read_bytes()) == digest
    for blob in [*layer_digests, manifest["config"]["digest"]]:
        assert sha256((out / blob.removeprefix("sha256:")).read_bytes()) == blob
