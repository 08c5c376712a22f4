"""docker push and pull against the registry: the image comes back bit for bit."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from .daemons import Dockerd, RegistryServer
from .images import image_id, layer_count, make_image, push, remove_local

pytestmark = pytest.mark.e2e

LAYERS = 3


@dataclass(frozen=True)
class PushedImage:
    repository: str  # 127.0.0.1:PORT/library/app
    image_id: str
    digest: str


@pytest.fixture(scope="module")
def pushed(dockerd: Dockerd, registry: RegistryServer) -> PushedImage:
    repository = f"{registry.host}/library/app"
    built = make_image(dockerd, f"{repository}:v1", layers=LAYERS)
    report = push(dockerd, f"{repository}:v1")
    assert report.count("Pushed") == LAYERS, report
    return PushedImage(repository, built, report.digest)


def test_pushed_image_pulls_back_with_the_same_id(dockerd: Dockerd, pushed: PushedImage) -> None:
    remove_local(dockerd, pushed.image_id)

    dockerd.docker("pull", f"{pushed.repository}:v1")

    assert image_id(dockerd, f"{pushed.repository}:v1") == pushed.image_id
    assert layer_count(dockerd, f"{pushed.repository}:v1") == LAYERS


def test_pull_by_digest_returns_the_pushed_image(dockerd: Dockerd, pushed: PushedImage) -> None:
    by_digest = f"{pushed.repository}@{pushed.digest}"
    remove_local(dockerd, pushed.image_id)

    dockerd.docker("pull", by_digest)

    assert image_id(dockerd, by_digest) == pushed.image_id
    repo_digests = dockerd.docker(
        "image", "inspect", "--format", "{{range .RepoDigests}}{{println .}}{{end}}", by_digest
    ).stdout.split()
    assert by_digest in repo_digests


def test_pushing_a_second_tag_uploads_no_blob(dockerd: Dockerd, pushed: PushedImage) -> None:
    dockerd.docker("pull", f"{pushed.repository}:v1")
    dockerd.docker("tag", f"{pushed.repository}:v1", f"{pushed.repository}:v2")

    report = push(dockerd, f"{pushed.repository}:v2")

    assert report.count("Layer already exists") == LAYERS, report
    assert report.digest == pushed.digest
