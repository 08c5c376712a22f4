"""Build test images without any upstream registry, and read what ``docker push`` says.

An image is ``FROM scratch`` plus one ``COPY`` per layer, each of a file of fresh random
bytes, so no two layers (in one image or across images) share a digest and every push
of a new image really uploads its blobs.
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from .daemons import Dockerd

DEFAULT_LAYER_SIZE = 256 * 1024


def make_image(dockerd: Dockerd, tag: str, layers: int = 3, layer_size: int = DEFAULT_LAYER_SIZE) -> str:
    """Build ``tag`` with ``layers`` distinct layers; returns the image ID (sha256:...)."""
    with tempfile.TemporaryDirectory(prefix="regd-e2e-image-") as directory:
        context = Path(directory)
        lines = ["FROM scratch"]
        for index in range(layers):
            name = f"layer{index}.bin"
            (context / name).write_bytes(os.urandom(layer_size + index))
            lines.append(f"COPY {name} /{name}")
        (context / "Dockerfile").write_text("\n".join(lines) + "\n")
        dockerd.docker("build", "--quiet", "--tag", tag, directory)
    return image_id(dockerd, tag)


def image_id(dockerd: Dockerd, reference: str) -> str:
    return dockerd.docker("image", "inspect", "--format", "{{.Id}}", reference).stdout.strip()


def image_exists(dockerd: Dockerd, reference: str) -> bool:
    result = dockerd.docker("image", "inspect", reference, check=False, timeout=30)
    return result.returncode == 0


def layer_count(dockerd: Dockerd, reference: str) -> int:
    layers = dockerd.docker("image", "inspect", "--format", "{{len .RootFS.Layers}}", reference)
    return int(layers.stdout)


@dataclass(frozen=True)
class PushReport:
    """What ``docker push`` printed: per-layer outcomes and the manifest digest."""

    layers: dict[str, str]  # short layer ID -> final status ("Pushed", "Layer already exists")
    digest: str

    def count(self, status: str) -> int:
        return sum(1 for outcome in self.layers.values() if outcome == status)


_LAYER_LINE = re.compile(r"^([0-9a-f]{12}): (Pushed|Layer already exists|Mounted from .+)$")
_DIGEST_LINE = re.compile(r"^\S+: digest: (sha256:[0-9a-f]{64}) size: \d+$")


def push(dockerd: Dockerd, reference: str) -> PushReport:
    output = dockerd.docker("push", reference).stdout
    layers: dict[str, str] = {}
    digest = ""
    for line in output.splitlines():
        if match := _LAYER_LINE.match(line.strip()):
            layers[match[1]] = match[2]
        elif match := _DIGEST_LINE.match(line.strip()):
            digest = match[1]
    assert digest, f"no digest in the output of docker push {reference}:\n{output}"
    return PushReport(layers, digest)


def remove_local(dockerd: Dockerd, image: str) -> None:
    """Remove an image and all its tags from dockerd, so a pull must fetch everything."""
    dockerd.docker("rmi", "--force", image)
    assert not image_exists(dockerd, image)


def import_into_ctr(
    dockerd: Dockerd, ctr: Callable[..., subprocess.CompletedProcess[str]], image: str, directory: Path
) -> str:
    """``docker save`` an image no registry has seen and ``ctr images import`` it (with
    ``ctr`` running ctr in a namespace); returns the name ctr knows it by."""
    archive = directory / "image.tar"
    dockerd.docker("save", "--output", str(archive), image)
    ctr("images", "import", "--no-unpack", "--compress-blobs", str(archive))
    return f"docker.io/{image}"


# ``ctr images push``, one blob at a time. With its default concurrency, Debian's ctr
# 1.6.20 now and then fails a push with "failed to copy: rpc error: code = Internal desc
# = unexpected EOF": its gRPC read of its own content store breaks (containerd's stream,
# not the registry's), after which it drops the blob PUTs it had started (regd logs them
# as 499). Pushes of a two-layer image in loops failed 3 times in 110 against regd, once
# in 190 against CNCF distribution, and 0 times in 80 against regd one blob at a time.
# What the tests check (what ctr sends, what regd stores and serves) is the same.
CTR_PUSH = ("images", "push", "--plain-http", "--max-concurrent-uploaded-layers", "1")
