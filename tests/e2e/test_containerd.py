"""containerd (ctr) pulls and unpacks an image that docker pushed, and pushes one that
docker pulls back.

Unpacking checks each layer's uncompressed digest against the image config, so a
blob served with wrong bytes fails here even if its digest header is right.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from .daemons import Dockerd, RegistryServer
from .images import CTR_PUSH, image_id, import_into_ctr, make_image, push, remove_local
from .registry_http import manifest_served
from .tools import run

pytestmark = pytest.mark.e2e

Ctr = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def ctr_namespace(ctr: str, dockerd: Dockerd) -> Ctr:
    """Run ctr in a namespace of the private containerd used only by this test."""
    namespace = f"regd-e2e-{uuid.uuid4().hex[:8]}"

    def in_namespace(*args: str) -> subprocess.CompletedProcess[str]:
        return run(
            [ctr, "--address", str(dockerd.containerd_socket), "--namespace", namespace, *args],
            timeout=180,
        )

    return in_namespace


def image_digests(listing: str) -> dict[str, str]:
    """``ctr images ls`` rows as reference -> manifest digest."""
    rows = [line.split() for line in listing.splitlines()[1:] if line.strip()]
    return {row[0]: row[2] for row in rows}


def test_ctr_pulls_and_unpacks_an_image_pushed_by_docker(
    dockerd: Dockerd, registry: RegistryServer, ctr_namespace: Ctr
) -> None:
    reference = f"{registry.host}/library/ctr:v1"
    make_image(dockerd, reference, layers=3)
    pushed = push(dockerd, reference)

    # The native snapshotter unpacks on any file system, overlayfs needs a real one.
    ctr_namespace("images", "pull", "--plain-http", "--snapshotter", "native", reference)
    listing = ctr_namespace("images", "ls").stdout
    check = ctr_namespace("images", "check").stdout

    assert image_digests(listing)[reference] == pushed.digest
    assert "complete" in check, check


def test_ctr_pushes_an_image_that_docker_pulls_back(
    dockerd: Dockerd, registry: RegistryServer, ctr_namespace: Ctr, tmp_path: Path
) -> None:
    image = "regd-e2e/ctr-push:v1"
    built = make_image(dockerd, image, layers=2)
    local = import_into_ctr(dockerd, ctr_namespace, image, tmp_path)
    remove_local(dockerd, image)  # docker must fetch what ctr pushed
    destination = f"{registry.host}/library/ctr-pushed:v1"
    ctr_namespace("images", "tag", local, destination)

    ctr_namespace(*CTR_PUSH, destination)
    pushed = image_digests(ctr_namespace("images", "ls").stdout)[destination]
    served = manifest_served(registry, "library/ctr-pushed", "v1")
    dockerd.docker("pull", destination)

    assert served == ("application/vnd.docker.distribution.manifest.v2+json", pushed)
    assert image_id(dockerd, destination) == built  # the same config: the same image
