"""containerd (ctr) pulls and unpacks an image that docker pushed.

Unpacking checks each layer's uncompressed digest against the image config, so a
blob served with wrong bytes fails here even if its digest header is right.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable

import pytest

from .daemons import Dockerd, RegistryServer
from .images import make_image, push
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
